package sqlite

// OnSnapshotPinned makes Dump call f once its copy's snapshot is fixed, and
// returns a function that stops it.
func OnSnapshotPinned(f func()) (stop func()) {
	snapshotPinned.Store(&f)
	return func() { snapshotPinned.Store(nil) }
}
