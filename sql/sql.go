// Package sql holds every service's schema migrations and sqlc queries, one
// folder per service. It exists as a module so that services can embed their
// migrations; it contains no code beyond the embedding.
package sql

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed */migrations/*.sql
var files embed.FS

// Migrations returns the migration files of one service (or "store" for the
// inbox/outbox tables every service database carries), named NNNN_what.sql
// and applied in lexical order.
func Migrations(service string) (fs.FS, error) {
	sub, err := fs.Sub(files, service+"/migrations")
	if err != nil {
		return nil, fmt.Errorf("sql: migrations of %q: %w", service, err)
	}
	if entries, err := fs.ReadDir(sub, "."); err != nil || len(entries) == 0 {
		return nil, fmt.Errorf("sql: no migrations for %q", service)
	}
	return sub, nil
}
