// Package backup is the on-disk format of a Lifeboat backup, shared by the
// services that take, ship and restore backups.
//
// A backup is a directory named backup-%Y-%m-%d_%H-%M-%S-%z in local time
// (backup-2015-12-23_12-19-17-0500, CycleCloud's naming) holding the payload
// a store kind wrote and MANIFEST.json, which lists every payload file with its
// size and SHA-256. A directory with such a name exists only for a complete
// backup: Write builds it under a temporary name that IsName never matches,
// fsyncs everything and renames it. Only names of that exact form are ever
// touched; anything else in a backup directory is left alone.
//
// Two backups in the same second: Write names a backup after the second it
// was taken and, when that name is already taken, the next free second after
// it (the rename refuses to replace an existing name, so two writers racing
// for one name cannot both win). The name keeps its exact form and its time
// stays within a few seconds of taken_at, which the manifest records exactly.
package backup

import (
	"errors"
	"fmt"
	"time"
)

// nameLayout is backup-%Y-%m-%d_%H-%M-%S-%z in Go's notation.
const nameLayout = "backup-2006-01-02_15-04-05-0700"

// ErrNotName is returned by ParseName (wrapped) for a string that is not a
// backup name of the exact form.
var ErrNotName = errors.New("not a backup name")

// FormatName returns the name of a backup taken at t, in t's location to the
// second; Write passes local time, so names are in local time.
func FormatName(t time.Time) string {
	return t.Format(nameLayout)
}

// ParseName returns the time in a backup name. Only the exact form
// FormatName produces is accepted (so FormatName(ParseName(s)) == s);
// anything else gives an error wrapping ErrNotName.
func ParseName(name string) (time.Time, error) {
	t, err := time.Parse(nameLayout, name)
	if err != nil || FormatName(t) != name {
		return time.Time{}, fmt.Errorf("%q: %w (want backup-YYYY-MM-DD_HH-MM-SS-ZZZZ, e.g. backup-2015-12-23_12-19-17-0500)", name, ErrNotName)
	}
	return t, nil
}

// IsName reports whether name is a backup name of the exact form. Only such
// names are ever listed, verified, replaced or deleted.
func IsName(name string) bool {
	_, err := ParseName(name)
	return err == nil
}
