// Package sqlite is the store kind for a SQLite database: a consistent online
// copy, taken while writers keep committing (of a WAL-mode database, its file
// copied raw with the WAL's committed pages over it; otherwise with SQLite's
// backup API), and checked with PRAGMA integrity_check before it counts as a
// backup.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite" // also registers the "sqlite" database/sql driver

	"lifeboat.dev/pkg/backup"
)

// PayloadName is the database copy's file name in a backup; it opens with
// the stock sqlite3 CLI.
const PayloadName = "store.db"

// pagesPerStep is how much one backup step copies (4 MiB of 4 KiB pages)
// before Dump looks at its context again.
const pagesPerStep = 1024

// busyTimeout is how long Dump and Load wait for a lock another connection
// holds (a rollback-journal writer committing, or a checkpoint).
const busyTimeout = 10 * time.Second

// Kind backs up one SQLite database file.
type Kind struct {
	path string
}

// New returns the kind for the database at path.
func New(path string) *Kind {
	return &Kind{path: path}
}

// Name returns "sqlite".
func (k *Kind) Name() string { return "sqlite" }

// Dump copies the database into payloadDir/store.db while other connections
// keep writing. It opens a read transaction on the source first, so the copy
// is the database as of one snapshot; ConsistentAt is taken just before that
// snapshot, so every transaction committed before it is in the copy. In WAL
// mode writers do not wait for it (see walcopy.go); in rollback-journal mode
// they wait while the copy is made.
// The copy is switched to rollback-journal mode (a single file)
// and must pass PRAGMA integrity_check: a corrupt source is reported, never
// backed up as good.
func (k *Kind) Dump(ctx context.Context, payloadDir string) (backup.Info, error) {
	fi, err := os.Stat(k.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return backup.Info{}, fmt.Errorf("sqlite: database %s does not exist (check the plan's store path)", k.path)
	case err != nil:
		return backup.Info{}, fmt.Errorf("sqlite: database %s: %w", k.path, err)
	case fi.IsDir():
		return backup.Info{}, fmt.Errorf("sqlite: database %s is a directory, not a database file", k.path)
	case !fi.Mode().IsRegular():
		return backup.Info{}, fmt.Errorf("sqlite: database %s is not a regular file (%s)", k.path, fi.Mode().Type())
	}
	dst := filepath.Join(payloadDir, PayloadName)
	start := time.Now()
	consistentAt, err := k.copySnapshot(ctx, dst)
	if err != nil {
		return backup.Info{}, err
	}
	copied := time.Now()
	sum, err := checkCopy(ctx, dst)
	if err != nil {
		return backup.Info{}, fmt.Errorf("sqlite: %s: %w", k.path, err)
	}
	slog.DebugContext(ctx, "sqlite: dumped", slog.String("store", k.path),
		slog.Duration("copy", copied.Sub(start)), slog.Duration("integrity_check", time.Since(copied)))
	return backup.Info{ConsistentAt: consistentAt, Sums: map[string]string{PayloadName: sum}}, nil
}

// copySnapshot copies the database to dst inside one read transaction and
// returns the time taken just before the transaction's snapshot. A WAL-mode
// database is copied raw with the WAL's committed pages laid over it
// (walcopy.go says why that is the snapshot); a rollback-journal one, and
// any the fast path declines, through the backup API.
func (k *Kind) copySnapshot(ctx context.Context, dst string) (time.Time, error) {
	// After every connection below has closed: see heldFile.
	beginRaw()
	defer endRaw()
	// mode=ro: a backup never writes to the store, and never creates one.
	db, err := sql.Open("sqlite", dsn(k.path, "mode=ro"))
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: open %s: %w", k.path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: open %s: %w", k.path, err)
	}
	defer conn.Close()

	// Pin the snapshot: the copy runs inside this read transaction, so it
	// sees the same database however long it takes.
	var pin *walPin
	var ckpt *sql.DB // connection C of walcopy.go, for the fast path's checkpoints
	var consistentAt time.Time
	dbPath := resolve(k.path)
	wal, err := isWAL(dbPath)
	reason := "rollback-journal database"
	switch {
	case err != nil:
		reason = err.Error()
	case wal:
		ck, err := openCheckpointer(dbPath)
		if err != nil {
			reason = "open read-write: " + err.Error()
			break
		}
		defer ck.Close()
		pin, consistentAt, reason, err = pinSnapshot(ctx, k.path, dbPath, ck, conn)
		if err != nil {
			return time.Time{}, err
		}
		ckpt = ck
	}
	if pin == nil && consistentAt.IsZero() {
		if consistentAt, err = beginRead(ctx, conn, k.path); err != nil {
			return time.Time{}, err
		}
	}
	ended := false
	end := func() {
		if !ended {
			ended = true
			// Ends the read transaction; closing the connection would too.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}
	defer end()

	if pin != nil {
		var s walSnapshot
		if pin.index.mxFrame > 0 {
			s = parseWAL(pin.wal)
		}
		report(ctx, k.path, true, "")
		slog.DebugContext(ctx, "sqlite: copying the database file and its WAL",
			slog.String("store", k.path), slog.Int("pin_attempts", pin.attempts), slog.Duration("writers_held", pin.held),
			slog.Int("wal_frames", int(pin.index.mxFrame)), slog.Int("wal_pages", len(s.pages)))
		if err := copyWithOverlay(ctx, dbPath, dst, pin.index, s); err != nil {
			return time.Time{}, fmt.Errorf("sqlite: copy %s: %w", k.path, err)
		}
		end()
		// Step 5 of walcopy.go: what the writers committed meanwhile.
		if _, err := checkpoint(ctx, k.path, ckpt); err != nil {
			return time.Time{}, err
		}
		return consistentAt, nil
	}
	report(ctx, k.path, false, reason)
	err = conn.Raw(func(dc any) error {
		b, ok := dc.(backuper)
		if !ok {
			return fmt.Errorf("driver connection %T has no backup API", dc)
		}
		bk, err := b.NewBackup(uri(dst, ""))
		if err != nil {
			return err
		}
		return copyAll(ctx, bk)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: copy %s: %w", k.path, err)
	}
	return consistentAt, nil
}

// beginRead begins a read transaction on conn and fixes its snapshot with a
// first read. It returns the time just before, and calls the snapshotPinned
// hook after.
func beginRead(ctx context.Context, conn *sql.Conn, path string) (time.Time, error) {
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return time.Time{}, fmt.Errorf("sqlite: read %s: %w", path, err)
	}
	consistentAt, err := snapshotRead(ctx, conn, path)
	if err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return time.Time{}, err
	}
	if h := snapshotPinned.Load(); h != nil {
		(*h)()
	}
	return consistentAt, nil
}

// snapshotRead is the first read of the transaction conn has begun, which
// fixes its snapshot; it returns the time just before.
func snapshotRead(ctx context.Context, conn *sql.Conn, path string) (time.Time, error) {
	consistentAt := time.Now()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return time.Time{}, fmt.Errorf("sqlite: read %s: %w (is it a SQLite database, readable by this process?)", path, err)
	}
	return consistentAt, nil
}

// report logs which way a copy is made, and tells the copyReport hook.
func report(ctx context.Context, path string, fast bool, reason string) {
	if !fast {
		slog.DebugContext(ctx, "sqlite: copying with the backup API", slog.String("store", path), slog.String("reason", reason))
	}
	if h := copyReport.Load(); h != nil {
		(*h)(fast, reason)
	}
}

// Load replaces the database at target with the payload's copy, through the
// backup API in one write transaction: it is atomic, and connections open on
// target see the restored content. target and its directory are created
// when missing.
func (k *Kind) Load(ctx context.Context, payloadDir, target string) error {
	src := filepath.Join(payloadDir, PayloadName)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("sqlite: payload: %w (is this a backup of a sqlite store?)", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return fmt.Errorf("sqlite: load into %s: %w", target, err)
	}
	db, err := sql.Open("sqlite", dsn(target, ""))
	if err != nil {
		return fmt.Errorf("sqlite: load into %s: %w", target, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: load into %s: %w", target, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		r, ok := dc.(restorer)
		if !ok {
			return fmt.Errorf("driver connection %T has no backup API", dc)
		}
		bk, err := r.NewRestore(uri(src, "mode=ro"))
		if err != nil {
			return err
		}
		return copyAll(ctx, bk)
	})
	if err != nil {
		return fmt.Errorf("sqlite: load %s into %s: %w", src, target, err)
	}
	return nil
}

// snapshotPinned, when set (by tests), is called once the copy's snapshot
// is fixed: no transaction that begins committing after it is in the copy.
var snapshotPinned atomic.Pointer[func()]

// copyReport, when set (by tests), is told how each Dump copies: by the WAL
// fast path, or by the backup API and why.
var copyReport atomic.Pointer[func(fast bool, reason string)]

// beforeRawCopy, when set (by tests), is called by the WAL fast path inside
// the pinned read transaction, after the write lock is released and before
// the database file is copied.
var beforeRawCopy atomic.Pointer[func()]

type backuper interface {
	NewBackup(dstURI string) (*msqlite.Backup, error)
}

type restorer interface {
	NewRestore(srcURI string) (*msqlite.Backup, error)
}

// copyAll runs a backup to the end, a step at a time so that a cancelled
// context stops it; stopping early rolls the destination back.
func copyAll(ctx context.Context, bk *msqlite.Backup) error {
	for {
		more, err := bk.Step(pagesPerStep)
		if err == nil && more {
			err = ctx.Err()
		}
		if err != nil || !more {
			ferr := bk.Finish()
			if err != nil && ferr != nil && ferr.Error() == err.Error() {
				ferr = nil // Finish repeats the step's error (SQLITE_FULL, say)
			}
			return errors.Join(err, ferr)
		}
	}
}

// checkCopy makes the copy a single self-contained file (rollback-journal
// mode, so opening it never needs a -wal or -shm beside it), then runs PRAGMA
// integrity_check on it and, on the other core meanwhile, hashes it for the
// manifest: from the journal mode's change on the copy is final, and the
// check opens it read-only.
func checkCopy(ctx context.Context, p string) (sum string, err error) {
	if err := setJournalDelete(ctx, p); err != nil {
		return "", err
	}
	type hashed struct {
		sum string
		err error
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan hashed, 1)
	go func() {
		sum, _, err := backup.HashFile(hctx, p)
		done <- hashed{sum, err}
	}()
	if err := integrityCheck(ctx, p); err != nil {
		cancel()
		<-done
		return "", err
	}
	h := <-done
	if h.err != nil {
		return "", fmt.Errorf("check copy: hash: %w", h.err)
	}
	return h.sum, nil
}

// setJournalDelete switches the copy at p to rollback-journal mode.
func setJournalDelete(ctx context.Context, p string) error {
	db, err := sql.Open("sqlite", dsn(p, ""))
	if err != nil {
		return fmt.Errorf("check copy: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "PRAGMA journal_mode=DELETE"); err != nil {
		return fmt.Errorf("check copy: %w", err)
	}
	return db.Close()
}

// integrityCheck runs PRAGMA integrity_check on the database at p, opened
// read-only.
func integrityCheck(ctx context.Context, p string) (err error) {
	db, err := sql.Open("sqlite", dsn(p, "mode=ro"))
	if err != nil {
		return fmt.Errorf("check copy: %w", err)
	}
	defer func() {
		// The map goes a slice at a time, not in Close's one munmap that
		// stalls the process's other threads: see releaseMap.
		releaseMap(p)
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("check copy: %w", cerr)
		}
	}()
	db.SetMaxOpenConns(1)
	// The check reads every page once: through a memory map it takes half
	// the time it takes through read calls (3.1 s against 1.4 s for 1 GiB
	// here). The map's known cost, a signal instead of an error when the
	// disk fails under it, is confined to this file, which only this
	// function has open, on the backup disk just written.
	if fi, err := os.Stat(p); err == nil {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA mmap_size=%d", fi.Size())); err != nil {
			return fmt.Errorf("check copy: %w", err)
		}
	}
	// At most 5 problems: enough to see what is wrong, short enough to read.
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check(5)")
	if err != nil {
		return corrupt(err.Error())
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("check copy: %w", err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return corrupt(err.Error())
	}
	if len(problems) > 0 {
		return corrupt(strings.Join(problems, "; "))
	}
	return nil
}

// corrupt is the error for a copy that fails integrity_check.
func corrupt(problems string) error {
	return fmt.Errorf("integrity_check of the copy failed, so the source database is corrupt and was not backed up: %s (repair it, e.g. with sqlite3's .recover, or restore it from an earlier backup)", problems)
}

// dsn is the database/sql name of the database at p with query parameters.
func dsn(p, query string) string {
	q := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds())
	if query != "" {
		q = query + "&" + q
	}
	return uri(p, q)
}

// uri is SQLite's URI for the file at p, escaped so that any path works.
func uri(p, query string) string {
	u := url.URL{Scheme: "file", Path: p, RawQuery: query}
	if !filepath.IsAbs(p) {
		u = url.URL{Scheme: "file", Opaque: (&url.URL{Path: p}).EscapedPath(), RawQuery: query}
	}
	return u.String()
}
