package sqlite

// OnSnapshotPinned makes Dump call f once its copy's snapshot is fixed, and
// returns a function that stops it.
func OnSnapshotPinned(f func()) (stop func()) {
	snapshotPinned.Store(&f)
	return func() { snapshotPinned.Store(nil) }
}

// OnCopy makes Dump tell f how it copies: fast is the WAL fast path, reason
// why the backup API copied instead. It returns a function that stops it.
func OnCopy(f func(fast bool, reason string)) (stop func()) {
	copyReport.Store(&f)
	return func() { copyReport.Store(nil) }
}

// BeforeRawCopy makes the WAL fast path call f inside its read transaction
// before it copies the database file, and returns a function that stops it.
func BeforeRawCopy(f func()) (stop func()) {
	beforeRawCopy.Store(&f)
	return func() { beforeRawCopy.Store(nil) }
}
