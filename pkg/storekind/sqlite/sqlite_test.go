package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/pkg/storekind/storekindtest"
	"lifeboat.dev/pkg/testtool"
)

const seedRows = 500

func TestConformance(t *testing.T) {
	t.Cleanup(wantPath(t, true))
	storekindtest.Run(t, func(t *testing.T) storekindtest.Store {
		p := filepath.Join(t.TempDir(), "store.db")
		seed(t, p, seedRows)
		return storekindtest.Store{
			Kind: sqlite.New(p),
			Path: p,
			Change: func(t *testing.T) {
				db := open(t, p)
				mustExec(t, db, "DELETE FROM items WHERE id % 3 = 0")
				mustExec(t, db, "INSERT INTO items(id, name, body) VALUES (100000, 'new', x'00')")
			},
			Check: func(t *testing.T, target string) {
				t.Helper()
				checkSeeded(t, target, seedRows)
			},
		}
	})
}

// seed creates a WAL database at p with n rows in items.
func seed(t testing.TB, p string, n int) {
	t.Helper()
	db := open(t, p)
	mustExec(t, db, "PRAGMA journal_mode=WAL")
	mustExec(t, db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB)")
	mustExec(t, db, "CREATE INDEX items_name ON items(name)")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := tx.Exec("INSERT INTO items(id, name, body) VALUES (?, ?, randomblob(200))", i, fmt.Sprintf("item-%06d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkSeeded fails t unless the database at p holds exactly the n seeded
// rows and passes integrity_check.
func checkSeeded(t *testing.T, p string, n int) {
	t.Helper()
	db := open(t, p)
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check of %s: %q, %v", p, ok, err)
	}
	rows, err := db.Query("SELECT id, name FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		i++
		var id int
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		if id != i || name != fmt.Sprintf("item-%06d", i) {
			t.Fatalf("row %d of %s is (%d, %q), want (%d, item-%06d)", i, p, id, name, i, i)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("%s holds %d rows, want %d", p, i, n)
	}
}

func open(t testing.TB, p string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestSnapshotUnderConcurrentWriter backs a database up while a writer keeps
// committing rows with increasing ids, and checks that each copy is a
// snapshot holding exactly the rows committed before consistent_at: a
// prefix of the ids with no gap, with every row whose commit returned
// before consistent_at, and no row whose commit began after the snapshot
// was fixed (a moment after consistent_at: the first read of the source,
// the only window in which a commit can land on either side).
//
// A WAL database is copied by the fast path, a rollback-journal one by the
// backup API (the writer waits while it copies).
func TestSnapshotUnderConcurrentWriter(t *testing.T) {
	inBothJournalModes(t, testSnapshotUnderConcurrentWriter)
}

func testSnapshotUnderConcurrentWriter(t *testing.T, journalMode string) {
	p := filepath.Join(t.TempDir(), "live.db")
	w := open(t, p)
	w.SetMaxOpenConns(1)
	mustExec(t, w, "PRAGMA journal_mode="+journalMode)
	mustExec(t, w, "CREATE TABLE log (id INTEGER PRIMARY KEY, pad BLOB)")

	type commit struct{ began, done time.Time }
	var mu sync.Mutex
	var commits []commit // commits[i] is id i+1
	committed := func() int { mu.Lock(); defer mu.Unlock(); return len(commits) }

	ctx, stop := context.WithCancel(context.Background())
	writerDone := make(chan error, 1)
	go func() {
		for id := 1; ctx.Err() == nil; id++ {
			began := time.Now()
			if _, err := w.Exec("INSERT INTO log(id, pad) VALUES (?, randomblob(2000))", id); err != nil {
				writerDone <- err
				return
			}
			done := time.Now()
			mu.Lock()
			commits = append(commits, commit{began, done})
			mu.Unlock()
		}
		writerDone <- nil
	}()
	t.Cleanup(func() { stop(); <-writerDone })

	testtool.WaitFor(t, 20*time.Second, func() error {
		if n := committed(); n < 200 {
			return fmt.Errorf("writer committed %d rows", n)
		}
		return nil
	})
	var pinnedAt time.Time
	t.Cleanup(sqlite.OnSnapshotPinned(func() { pinnedAt = time.Now() }))
	k := sqlite.New(p)
	for round := range 5 {
		payload := t.TempDir()
		started := time.Now()
		pinnedAt = time.Time{}
		info, err := k.Dump(context.Background(), payload)
		if err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		if pinnedAt.IsZero() || pinnedAt.Before(info.ConsistentAt) || pinnedAt.After(returned) {
			t.Fatalf("round %d: snapshot fixed at %v, consistent_at %v, dump returned %v", round, pinnedAt, info.ConsistentAt, returned)
		}
		copyDB := open(t, filepath.Join(payload, sqlite.PayloadName))
		var n, lo, hi int
		if err := copyDB.QueryRow("SELECT count(*), coalesce(min(id),0), coalesce(max(id),0) FROM log").Scan(&n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n == 0 || lo != 1 || hi != n {
			t.Fatalf("round %d: the copy holds %d rows with ids %d..%d: not a prefix of the committed ids", round, n, lo, hi)
		}
		mu.Lock()
		during := 0
		for i, c := range commits {
			if c.began.After(started) && c.done.Before(returned) {
				during++
			}
			id := i + 1
			if c.done.Before(info.ConsistentAt) && id > n {
				t.Errorf("round %d: row %d committed before consistent_at but is missing from the copy (which ends at %d)", round, id, n)
			}
			if id <= n && c.began.After(pinnedAt) {
				t.Errorf("round %d: row %d began committing after the snapshot was fixed (consistent_at %v) but is in the copy", round, id, info.ConsistentAt)
			}
		}
		t.Logf("round %d: copy holds rows 1..%d; %d commits ran during the dump", round, n, during)
		if n > len(commits) {
			t.Errorf("round %d: the copy holds %d rows but only %d commits had returned", round, n, len(commits))
		}
		mu.Unlock()
		// The writer keeps going past the copy: it was never stopped.
		testtool.WaitFor(t, 20*time.Second, func() error {
			if c := committed(); c < n+50 {
				return fmt.Errorf("writer at %d rows, copy had %d", c, n)
			}
			return nil
		})
	}
	stop()
	if err := <-writerDone; err != nil {
		t.Fatalf("the writer failed during the backups: %v", err)
	}
	writerDone <- nil // for the cleanup
}

func TestCorruptSourceIsRefused(t *testing.T) {
	inBothJournalModes(t, testCorruptSourceIsRefused)
}

func testCorruptSourceIsRefused(t *testing.T, journalMode string) {
	p := filepath.Join(t.TempDir(), "corrupt.db")
	db := open(t, p)
	mustExec(t, db, "PRAGMA journal_mode="+journalMode)
	mustExec(t, db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB)")
	mustExec(t, db, "CREATE INDEX items_name ON items(name)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
		INSERT INTO items(name, body) SELECT printf('n%05d', i), randomblob(100) FROM n`)
	db.Close()
	// Scribble over the middle of the file: b-tree pages, not the header.
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+8192; i++ {
		b[i] = 0x5a
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	_, _, err = storekind.Backup(context.Background(), sqlite.New(p), dir, manifest())
	if err == nil {
		t.Fatal("a corrupt database was backed up as good")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), p) {
		t.Errorf("error %q should say the database at %s is corrupt", err, p)
	}
	assertNoBackup(t, dir)
}

func TestMissingOrForeignSourceNamesThePath(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database\n", 500)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope", "store.db"), "does not exist"},
		{"directory", dir, "not a database file"},
		{"not a database", notDB, "not a database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backups := t.TempDir()
			_, _, err := storekind.Backup(context.Background(), sqlite.New(tc.path), backups, manifest())
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("backup of %s: error %v, want one naming the path and saying %q", tc.path, err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
				t.Error("the backup created the missing store's directory")
			}
			assertNoBackup(t, backups)
		})
	}
}

// TestPayloadOpensWithSqlite3CLI opens a backup's payload with the stock
// sqlite3 program and runs PRAGMA integrity_check, as an operator would.
func TestPayloadOpensWithSqlite3CLI(t *testing.T) {
	cli, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the sqlite3 CLI is missing: apt-get install sqlite3")
		}
		t.Skip("the sqlite3 CLI is missing: apt-get install sqlite3")
	}
	t.Cleanup(wantPath(t, true))
	p := filepath.Join(t.TempDir(), "store.db")
	seed(t, p, seedRows)
	dir := t.TempDir()
	name, _, err := storekind.Backup(context.Background(), sqlite.New(p), dir, manifest())
	if err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(dir, name, sqlite.PayloadName)
	out, err := exec.Command(cli, "-readonly", payload, "PRAGMA integrity_check; SELECT count(*) FROM items;").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", payload, err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("ok\n%d", seedRows); got != want {
		t.Fatalf("sqlite3 printed %q, want %q", got, want)
	}
	// Reading it changed nothing the manifest covers.
	if _, err := backup.Verify(context.Background(), dir, name); err != nil {
		t.Fatal(err)
	}
}

// TestPayloadIsOneFile: the copy of a WAL database is a single file, with no
// -wal or -shm beside it.
func TestPayloadIsOneFile(t *testing.T) {
	t.Cleanup(wantPath(t, true))
	p := filepath.Join(t.TempDir(), "store.db")
	seed(t, p, 10)
	payload := t.TempDir()
	if _, err := sqlite.New(p).Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || des[0].Name() != sqlite.PayloadName {
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		t.Fatalf("payload holds %v, want only %s", names, sqlite.PayloadName)
	}
}

func BenchmarkDump(b *testing.B) {
	p := filepath.Join(b.TempDir(), "bench.db")
	seed(b, p, 50000) // about 12 MiB
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	k := sqlite.New(p)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		payload, err := os.MkdirTemp(b.TempDir(), "payload")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := k.Dump(context.Background(), payload); err != nil {
			b.Fatal(err)
		}
	}
}

// inBothJournalModes runs test on a WAL database, which the fast path must
// copy, and on a rollback-journal one, which the backup API must copy.
func inBothJournalModes(t *testing.T, test func(t *testing.T, journalMode string)) {
	for _, tc := range []struct {
		mode string
		fast bool
	}{{"WAL", true}, {"DELETE", false}} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Cleanup(wantPath(t, tc.fast))
			test(t, tc.mode)
		})
	}
}

// wantPath fails t if a Dump until stop copies other than by the WAL fast
// path (fast) or the backup API; it fails t too if no Dump copied.
func wantPath(t *testing.T, fast bool) (stop func()) {
	t.Helper()
	var mu sync.Mutex
	dumps := 0
	end := sqlite.OnCopy(func(f bool, reason string) {
		mu.Lock()
		dumps++
		mu.Unlock()
		if f != fast {
			t.Errorf("the copy was made by the fast path: %v, want %v (%s)", f, fast, reason)
		}
	})
	return func() {
		end()
		mu.Lock()
		defer mu.Unlock()
		if dumps == 0 {
			t.Error("no dump made a copy")
		}
	}
}

func manifest() backup.Manifest {
	return backup.Manifest{Instance: "inst", Plan: "plan", Kind: backup.KindScheduled}
}

// assertNoBackup fails t if dir holds anything: no final name, no leftover.
func assertNoBackup(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("%s was left in the backup directory", de.Name())
	}
}
