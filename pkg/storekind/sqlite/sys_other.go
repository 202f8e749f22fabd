//go:build !linux

package sqlite

import (
	"io"
	"os"
)

// releaseMap is a no-op where the process's maps cannot be read: Close
// unmaps the integrity check's map in one go (see sys_linux.go).
func releaseMap(string) {}

// copyRange copies up to n bytes of in at off to the same offset of out,
// leaving both descriptors' offsets alone (in is shared: heldFile), and
// returns how many it copied: fewer than n only at the end of in.
func copyRange(out, in *os.File, off, n int64) (int64, error) {
	return io.Copy(io.NewOffsetWriter(out, off), io.NewSectionReader(in, off, n))
}

// sharedInProcess reports true: where the process's descriptors cannot be
// listed, a held descriptor stays open.
func sharedInProcess(*os.File, os.FileInfo) bool { return true }

// unlinked reports false: where a file's link count cannot be read, a held
// descriptor stays open.
func unlinked(*os.File) bool { return false }
