//go:build !linux

package backup

// renameNoReplace renames oldpath to newpath, failing with an error wrapping
// fs.ErrExist when newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	return renameChecked(oldpath, newpath)
}
