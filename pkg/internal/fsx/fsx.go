// Package fsx holds the file-system steps that backups and the store kinds
// share: fsync a directory, swap a new tree into place for a crash-safe
// Load, and a reader that stops a long copy when its context ends.
package fsx

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// CtxReader returns a reader of r that fails with ctx's error once ctx has
// ended, so that a long copy or hash stops between two reads.
func CtxReader(ctx context.Context, r io.Reader) io.Reader {
	return ctxReader{ctx, r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
