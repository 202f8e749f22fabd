package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ErrCorrupt is wrapped by the errors of Verify and ReadManifest when a
// backup does not match its manifest, or has none: it must not be restored.
var ErrCorrupt = errors.New("backup does not match its manifest")

// Verify re-reads every file of backup name in dir and checks it against the
// manifest: sizes and SHA-256 equal, no payload file missing or extra. It
// returns the manifest. A mismatch gives an error wrapping ErrCorrupt that
// names every file that differs and how.
func Verify(ctx context.Context, dir, name string) (Manifest, error) {
	m, err := ReadManifest(dir, name)
	if err != nil {
		return Manifest{}, err
	}
	root := filepath.Join(dir, name)
	var problems []error
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Path] = true
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problems = append(problems, fmt.Errorf("%s: missing", f.Path))
			continue
		case err != nil:
			return Manifest{}, fmt.Errorf("backup: verify %s: %w", name, err)
		case !fi.Mode().IsRegular():
			problems = append(problems, fmt.Errorf("%s: is a %s, not a regular file", f.Path, kindOf(fi.Mode())))
			continue
		case fi.Size() != f.Size:
			problems = append(problems, fmt.Errorf("%s: size %d, manifest says %d", f.Path, fi.Size(), f.Size))
			continue
		}
		sum, _, err := HashFile(ctx, p)
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: verify %s: %w", name, err)
		}
		if sum != f.SHA256 {
			problems = append(problems, fmt.Errorf("%s: sha256 %s, manifest says %s", f.Path, sum, f.SHA256))
		}
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() || rel == ManifestName || listed[rel] {
			return nil
		}
		problems = append(problems, fmt.Errorf("%s: not in the manifest", rel))
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: verify %s: %w", name, err)
	}
	if len(problems) > 0 {
		return Manifest{}, fmt.Errorf("backup: verify %s: %w:\n%w", name, ErrCorrupt, errors.Join(problems...))
	}
	return m, nil
}

// Entry is one backup in a directory.
type Entry struct {
	// Name is the backup's directory name.
	Name string
	// Time is the time in the name, from which retention measures age.
	Time time.Time
}

// List returns the backups in dir, oldest first: the directories whose names
// are of the exact backup form. Everything else is ignored. It does not read
// or verify them.
func List(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", dir, err)
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		t, err := ParseName(de.Name())
		if err != nil {
			continue
		}
		out = append(out, Entry{Name: de.Name(), Time: t})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// kindOf names a file type for errors.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
