package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lifeboat.dev/pkg/internal/faults"
	"lifeboat.dev/pkg/internal/fsx"
)

// tempPrefix starts the name of a backup being written. IsName never matches
// it, so nothing treats a half-written backup as a backup.
const tempPrefix = ".tmp-backup-"

// maxNameTries bounds the search for a free name: one per second after
// taken_at.
const maxNameTries = 3600

// Info is what a store kind reports about the payload it wrote.
type Info struct {
	// ConsistentAt: every change committed to the store before it is in the
	// payload. Required.
	ConsistentAt time.Time
	// LoadCommand is the command that loads the payload back, for command
	// stores; recorded in the manifest for restore.
	LoadCommand []string
	// Sums holds the SHA-256 (hex, as HashFile gives it) of payload files
	// the store hashed itself once they were final, by slash-separated path
	// relative to the payload directory, so that Write does not read them
	// again (the sqlite kind hashes its copy while integrity_check reads
	// it). Write still fsyncs them; every other file it hashes.
	Sums map[string]string
}

// Fill writes a store's payload into payloadDir (an empty directory) and
// reports when the copy was consistent. It must not create ManifestName at
// the top of payloadDir, and may hold only regular files and directories.
type Fill func(ctx context.Context, payloadDir string) (Info, error)

// Write takes a backup into dir (created if missing): it makes a temporary
// directory there, lets fill write the payload into it, hashes every file,
// writes MANIFEST.json, fsyncs every file and directory, renames the
// directory to its final name and fsyncs dir. It returns the final name and
// the manifest written.
//
// m needs Instance, Plan, StoreKind and Kind; Write sets FormatVersion,
// TakenAt (now, unless set), ConsistentAt, LoadCommand, Files, TotalBytes and
// SHA256. The name is FormatName(TakenAt) in local time, or the next free
// second when that name exists (see the package doc).
//
// On any error or cancellation before the rename, the temporary directory is
// removed and no final name exists. A crash leaves only a temporary directory,
// which CleanTemp removes.
func Write(ctx context.Context, dir string, m Manifest, fill Fill) (name string, _ Manifest, err error) {
	if err := m.checkNew(); err != nil {
		return "", Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if m.TakenAt.IsZero() {
		m.TakenAt = time.Now()
	}
	m.FormatVersion = FormatVersion
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", Manifest{}, fmt.Errorf("backup: backup directory %s: %w (create it, or make its parent writable by this process)", dir, err)
	}
	tmp, err := os.MkdirTemp(dir, tempPrefix+"*")
	if err != nil {
		return "", Manifest{}, fmt.Errorf("backup: cannot write in backup directory %s: %w (make it writable by this process)", dir, err)
	}
	defer func() {
		if err != nil {
			// Best effort: what is left is a temporary name, which nothing
			// mistakes for a backup and CleanTemp removes.
			_ = os.RemoveAll(tmp)
		}
	}()

	info, err := fill(ctx, tmp)
	if err != nil {
		return "", Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return "", Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if info.ConsistentAt.IsZero() {
		return "", Manifest{}, fmt.Errorf("backup: %s store reported no consistent_at", m.StoreKind)
	}
	m.ConsistentAt = info.ConsistentAt
	m.LoadCommand = info.LoadCommand
	faults.Point("backup.write.after-fill")

	if _, err := os.Lstat(filepath.Join(tmp, ManifestName)); err == nil {
		return "", Manifest{}, fmt.Errorf("backup: %s store wrote a payload file named %s, which is reserved for the manifest", m.StoreKind, ManifestName)
	}
	files, dirs, err := hashTree(ctx, tmp, info.Sums)
	if err != nil {
		return "", Manifest{}, fmt.Errorf("backup: payload: %w", err)
	}
	if len(files) == 0 {
		return "", Manifest{}, fmt.Errorf("backup: %s store wrote no payload", m.StoreKind)
	}
	m.Files = files
	m.TotalBytes = 0
	for _, f := range files {
		m.TotalBytes += f.Size
	}
	m.SHA256 = payloadSum(files)

	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", Manifest{}, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestName), append(b, '\n')); err != nil {
		return "", Manifest{}, fmt.Errorf("backup: manifest: %w", err)
	}
	// Deepest first, the temporary directory itself last: every entry is
	// durable before the rename makes the backup visible.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := fsx.SyncDir(dirs[i]); err != nil {
			return "", Manifest{}, fmt.Errorf("backup: fsync: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", Manifest{}, fmt.Errorf("backup: %w", err)
	}
	faults.Point("backup.write.before-rename")

	name, err = publish(dir, tmp, m.TakenAt.Local())
	if err != nil {
		return "", Manifest{}, fmt.Errorf("backup: %w", err)
	}
	faults.Point("backup.write.after-rename")
	if err := fsx.SyncDir(dir); err != nil {
		// The rename may not survive a power loss: take it back so that no
		// caller believes in a backup that may vanish.
		_ = os.RemoveAll(filepath.Join(dir, name))
		return "", Manifest{}, fmt.Errorf("backup: fsync %s: %w", dir, err)
	}
	return name, m, nil
}

// publish renames tmp to the first free name at or after t, never replacing
// an existing entry.
func publish(dir, tmp string, t time.Time) (string, error) {
	t = t.Truncate(time.Second)
	for i := range maxNameTries {
		name := FormatName(t.Add(time.Duration(i) * time.Second))
		err := renameNoReplace(tmp, filepath.Join(dir, name))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("rename to %s: %w", name, err)
		}
	}
	return "", fmt.Errorf("no free backup name in the %d seconds after %s (too many backups of one directory at once)", maxNameTries, FormatName(t))
}

// hashTree hashes and fsyncs every regular file under root, returning them
// sorted by path, and the directories (root first, parents before children).
// Anything but regular files and directories is refused.
func hashTree(ctx context.Context, root string, sums map[string]string) ([]File, []string, error) {
	var files []File
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is a %s: a payload holds only regular files and directories", rel, kindOf(d.Type()))
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum, size := sums[rel], fi.Size()
		if sum != "" {
			err = syncFile(p)
		} else {
			sum, size, err = hashFile(ctx, p, true)
		}
		if err != nil {
			return err
		}
		files = append(files, File{Path: rel, Size: size, SHA256: sum, Mode: Mode(fi.Mode().Perm())})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sortFiles(files)
	return files, dirs, nil
}

// HashFile returns the hex SHA-256 and length of the file at p, as a
// manifest records them. It stops early when ctx ends.
func HashFile(ctx context.Context, p string) (sum string, size int64, err error) {
	return hashFile(ctx, p, false)
}

// syncFile fsyncs the file at p.
func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// hashFile returns the hex SHA-256 and length of the file at p, fsyncing it
// first when sync is set. It stops early when ctx ends.
func hashFile(ctx context.Context, p string, sync bool) (string, int64, error) {
	if sync {
		if err := syncFile(p); err != nil {
			return "", 0, err
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, fsx.CtxReader(ctx, f))
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeFileSync writes a new file and fsyncs it.
func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// CleanTemp removes what interrupted Writes left in dir (temporary backup
// directories) and returns their names. Call it when no Write into dir is
// running, such as when the plan's owner starts: it cannot tell a crashed
// write from a running one. Nothing else in dir is touched.
func CleanTemp(ctx context.Context, dir string) ([]string, error) {
	return cleanPrefix(ctx, dir, tempPrefix)
}

func cleanPrefix(ctx context.Context, dir, prefix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: clean %s: %w", dir, err)
	}
	var removed []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("backup: clean %s: %w", dir, err)
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("backup: clean %s: %w", dir, err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}
