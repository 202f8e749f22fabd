// Package store opens a service's SQLite database (modernc.org/sqlite: WAL,
// busy timeout, foreign keys, one writer), applies its migrations, and holds
// the inbox/outbox that makes every handler's effect happen exactly once:
// the state change, the consumed event's id and the events it emits commit
// in one transaction (see Tx), and a Relay publishes the outbox.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	lbsql "lifeboat.dev/sql"
)

// DB is one service's database: a single writer connection, so that writes
// never contend for SQLite's lock, and a pool of readers.
type DB struct {
	Path string
	// w is the one writer: writes go through Update or a Batch, so that
	// nothing bypasses the inbox and the outbox.
	w *sql.DB
	// R is a pool of read-only connections for queries outside a handler.
	R       *sql.DB
	r       *sql.DB // R, for this package
	emitter string  // Options.Emitter
	// Source is the CloudEvents source of the events this database emits,
	// e.g. "lifeboat/host-1/backup-scheduler".
	Source string
	// notify is signalled after a commit that added outbox rows;
	// workNotify after one that enqueued work.
	notify, workNotify chan struct{}
	now                func() time.Time

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared on W, see stmt.go
}

// Options shape Open.
type Options struct {
	// Migrations of the service, applied after the inbox/outbox's own.
	Migrations fs.FS
	// Source is the CloudEvents source of emitted events.
	Source string
	// Emitter names what emits (the service): an event emitted while a
	// message is applied gets an id derived from it, the message's id and
	// the event's place among those the message emitted, so that every
	// host applying the message emits the same event under the same id
	// and JetStream keeps one (its duplicate window), consumers apply one
	// (their inbox).
	Emitter string
	// Synchronous is SQLite's synchronous pragma: FULL (the default) fsyncs
	// the WAL on every commit, so an acked event survives power loss.
	Synchronous string
	// BusyTimeout bounds how long a connection waits for a lock.
	BusyTimeout time.Duration
	// Now is the clock of the store's own timestamps and of the work
	// queue's due times (tests inject one); nil means time.Now.
	Now func() time.Time
}

// NewOptions returns the defaults.
func NewOptions(source string, migrations fs.FS) Options {
	return Options{Source: source, Migrations: migrations, Synchronous: "FULL", BusyTimeout: 5 * time.Second}
}

// Open opens (creating it and its directory if needed) the database at path
// and brings it up to date with the inbox/outbox migrations and the
// service's own.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	pragmas := []string{
		fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()),
		"journal_mode(WAL)",
		"foreign_keys(1)",
		"synchronous(" + opts.Synchronous + ")",
	}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db := &DB{Path: path, w: w, R: r, r: r, Source: opts.Source, emitter: opts.Emitter, notify: make(chan struct{}, 1), workNotify: make(chan struct{}, 1),
		now: now, stmts: map[string]*sql.Stmt{}}
	own, err := lbsql.Migrations("store")
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := db.migrate(ctx, "store", own); err != nil {
		db.Close()
		return nil, err
	}
	if opts.Migrations != nil {
		if err := db.migrate(ctx, "service", opts.Migrations); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	db.stmtMu.Lock()
	for _, st := range db.stmts {
		st.Close()
	}
	db.stmts = map[string]*sql.Stmt{}
	db.stmtMu.Unlock()
	return errors.Join(db.R.Close(), db.w.Close())
}

// migrate applies, in lexical order, the .sql files of migrations not yet
// recorded for set in schema_migrations, each in its own transaction.
func (db *DB) migrate(ctx context.Context, set string, migrations fs.FS) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at INTEGER NOT NULL,
		PRIMARY KEY (migration_set, name))`); err != nil {
		return fmt.Errorf("store: %s: schema_migrations: %w", db.Path, err)
	}
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		var n int
		if err := db.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE migration_set = ? AND name = ?`, set, name).Scan(&n); err != nil {
			return fmt.Errorf("store: %s: %w", db.Path, err)
		}
		if n > 0 {
			continue
		}
		body, err := fs.ReadFile(migrations, name)
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		tx, err := db.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: %s: migration %s/%s failed: %w", db.Path, set, name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)`, set, name, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns its findings as an
// error when the database is not "ok".
func (db *DB) IntegrityCheck(ctx context.Context) error {
	rows, err := db.R.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("store: integrity_check %s: %w", db.Path, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		lines = append(lines, s)
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return nil
	}
	return fmt.Errorf("store: %s fails integrity_check: %s", db.Path, strings.Join(lines, "; "))
}
