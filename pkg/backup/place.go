package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"lifeboat.dev/pkg/internal/faults"
	"lifeboat.dev/pkg/internal/fsx"
)

// placePrefix starts the name of a copy being placed: not tempPrefix, so
// that a plan's CleanTemp and a copy's CleanTempPlaced, in one directory
// after a failover, never remove each other's work in progress.
const placePrefix = ".tmp-copy-"

// CleanTempPlaced removes what interrupted Places left in dir. Call it
// when no Place into dir runs.
func CleanTempPlaced(dir string) ([]string, error) {
	return cleanPrefix(context.Background(), dir, placePrefix)
}

// Place writes a copy of a backup taken elsewhere into dir under its own
// name: fill writes the payload files into a temporary directory and
// returns the hex SHA-256 of those it hashed by reading them back as it
// wrote them (by slash path; nil for none: Place reads the rest), manifest
// is the source's MANIFEST.json byte for byte, and the copy becomes
// visible (a rename, as Write's) only once every file is durable and
// matches the manifest in size, SHA-256 and mode, with nothing extra. A
// mismatch gives an error wrapping ErrCorrupt naming each file, and leaves
// no trace but a temporary name CleanTemp removes. Placing a name that
// exists is refused (fs.ErrExist).
func Place(ctx context.Context, dir, name string, manifest []byte, fill func(ctx context.Context, payloadDir string) (map[string]string, error)) (err error) {
	if _, err := ParseName(name); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return fmt.Errorf("backup: place %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("backup: backup directory %s: %w (create it, or make its parent writable by this process)", dir, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
		return fmt.Errorf("backup: place %s in %s: %w", name, dir, os.ErrExist)
	}
	tmp, err := os.MkdirTemp(dir, placePrefix+"*")
	if err != nil {
		return fmt.Errorf("backup: cannot write in backup directory %s: %w (make it writable by this process)", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	sums, err := fill(ctx, tmp)
	if err != nil {
		return fmt.Errorf("backup: place %s: %w", name, err)
	}
	files, dirs, err := hashTree(ctx, tmp, sums)
	if err != nil {
		return fmt.Errorf("backup: place %s: %w", name, err)
	}
	if err := sameFiles(files, m.Files); err != nil {
		return fmt.Errorf("backup: place %s: %w:\n%w", name, ErrCorrupt, err)
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestName), manifest); err != nil {
		return fmt.Errorf("backup: place %s: manifest: %w", name, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := fsx.SyncDir(dirs[i]); err != nil {
			return fmt.Errorf("backup: place %s: fsync: %w", name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("backup: place %s: %w", name, err)
	}
	faults.Point("backup.place.before-rename")
	if err := renameNoReplace(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("backup: place %s in %s: %w", name, dir, err)
	}
	if err := fsx.SyncDir(dir); err != nil {
		_ = os.RemoveAll(filepath.Join(dir, name))
		return fmt.Errorf("backup: place %s: fsync %s: %w", name, dir, err)
	}
	return nil
}

// sameFiles says how got (what a copy holds) differs from want (its
// manifest's files), both sorted by path.
func sameFiles(got, want []File) error {
	var problems []error
	have := map[string]File{}
	for _, f := range got {
		have[f.Path] = f
	}
	for _, w := range want {
		g, ok := have[w.Path]
		delete(have, w.Path)
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("%s: missing", w.Path))
		case g.Size != w.Size:
			problems = append(problems, fmt.Errorf("%s: size %d, manifest says %d", w.Path, g.Size, w.Size))
		case g.SHA256 != w.SHA256:
			problems = append(problems, fmt.Errorf("%s: sha256 %s, manifest says %s", w.Path, g.SHA256, w.SHA256))
		case g.Mode != w.Mode:
			problems = append(problems, fmt.Errorf("%s: mode %04o, manifest says %04o", w.Path, uint32(g.Mode), uint32(w.Mode)))
		}
	}
	for _, g := range got {
		if _, extra := have[g.Path]; extra {
			problems = append(problems, fmt.Errorf("%s: not in the manifest", g.Path))
		}
	}
	return errors.Join(problems...)
}
