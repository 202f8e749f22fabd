// Package fsx holds the file-system steps the store kinds share for a
// crash-safe Load: fsync a directory, and swap a new tree into place.
package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SyncDir fsyncs a directory, making the entries in it durable.
func SyncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// Replace puts the tree at tmp in place of target (which need not exist) and
// removes what target held. Both must be in the same directory. Where the
// system allows, the swap is one atomic exchange, so a crash leaves either
// the old tree or the new one at target (and the other at tmp).
func Replace(tmp, target string) error {
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, target); err != nil {
			return err
		}
		return SyncDir(filepath.Dir(target))
	}
	if err := exchange(tmp, target); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(target)); err != nil {
		return err
	}
	// tmp now holds the old tree.
	return os.RemoveAll(tmp)
}
