package fsx

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchange swaps a and b atomically (renameat2 with RENAME_EXCHANGE), or
// with two renames on file systems without it.
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return exchangeRenames(a, b)
	}
	if err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}
