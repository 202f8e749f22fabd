package backup

import (
	"io/fs"
	"os"
)

// renameChecked renames oldpath to newpath unless newpath exists. Between the
// check and the rename another writer may take the name; rename(2) then
// fails with ENOTEMPTY because a backup directory is never empty, and
// syscall.Errno reports ENOTEMPTY as fs.ErrExist too.
func renameChecked(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrExist}
	}
	return os.Rename(oldpath, newpath)
}
