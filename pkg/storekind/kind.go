// Package storekind is how Lifeboat copies a store out and back in: one Kind
// interface, one package per kind (sqlite, files, command), and one
// conformance suite (storekindtest) that every kind passes.
package storekind

import (
	"context"

	"lifeboat.dev/pkg/backup"
)

// Kind copies one store into a backup payload and back.
type Kind interface {
	// Name returns the kind's name as recorded in manifests: "sqlite",
	// "files" or "command".
	Name() string
	// Dump writes a consistent copy of the store into payloadDir (an empty
	// directory) and returns when it is consistent: every change committed
	// before Info.ConsistentAt is in the copy. It has the shape of
	// backup.Fill.
	Dump(ctx context.Context, payloadDir string) (backup.Info, error)
	// Load replaces the store at target with the payload in payloadDir
	// (restore's half), atomically where the kind allows; a failed Load
	// leaves target as it was where the kind allows. target's meaning is the
	// kind's: a database file, a directory tree, or whatever the load command
	// makes of it.
	Load(ctx context.Context, payloadDir, target string) error
}

// Backup takes a backup of k's store into dir: backup.Write with k.Dump as
// the payload and k's name as the manifest's store kind. It returns the
// backup's name and manifest.
func Backup(ctx context.Context, k Kind, dir string, m backup.Manifest) (string, backup.Manifest, error) {
	m.StoreKind = k.Name()
	return backup.Write(ctx, dir, m, k.Dump)
}
