package sqlite_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/pkg/testtool"
)

// TestDumpKeepsTheProcessLocks: a backup leaves this process's SQLite locks
// on the database and its wal-index as they were. They are POSIX advisory
// locks, which closing any descriptor of the file releases, whoever took
// them: a dump that opened and closed the database or its -shm used to
// drop them, and another process could then checkpoint past a snapshot
// this process still reads, or take the database for its own and corrupt
// it. Here a reader of this process holds an older snapshot, so another
// process's TRUNCATE checkpoint must find it busy, after the dump as
// before.
func TestDumpKeepsTheProcessLocks(t *testing.T) {
	testtool.Need(t, "sqlite3", "apt-get install sqlite3")
	p := filepath.Join(t.TempDir(), "live.db")
	w := open(t, p)
	w.SetMaxOpenConns(1)
	mustExec(t, w, "PRAGMA journal_mode=WAL")
	mustExec(t, w, "CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
	mustExec(t, w, "INSERT INTO t(pad) VALUES (randomblob(1000))")
	r := open(t, p)
	r.SetMaxOpenConns(1)
	tx, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	mustExec(t, w, "INSERT INTO t(pad) VALUES (randomblob(1000))") // r's snapshot is no longer the newest

	truncate := func() string {
		t.Helper()
		out, err := exec.Command("sqlite3", p, "PRAGMA wal_checkpoint(TRUNCATE)").CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := truncate(); !strings.HasPrefix(got, "1|") {
		t.Fatalf("before the dump, another process's TRUNCATE checkpoint gave %q, want busy (1|...): this process reads an older snapshot", got)
	}
	for range 2 {
		if _, err := sqlite.New(p).Dump(context.Background(), t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if got := truncate(); !strings.HasPrefix(got, "1|") {
			t.Fatalf("after the dump, another process's TRUNCATE checkpoint gave %q, want busy (1|...): the dump released this process's locks", got)
		}
	}
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Errorf("the reader's snapshot now holds %d rows (%v), want 1", n, err)
	}
}

// TestDumpLeavesNoDescriptor: once a backup of a database that no other
// connection of this process has open is done, the process has no
// descriptor left on the database or its -shm (a volume is not kept busy
// past its backup), and the file keeps only the application's locks.
func TestDumpLeavesNoDescriptor(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd to list the process's descriptors")
	}
	p := filepath.Join(t.TempDir(), "live.db")
	w := open(t, p)
	mustExec(t, w, "PRAGMA journal_mode=WAL")
	mustExec(t, w, "CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
	mustExec(t, w, "INSERT INTO t(pad) VALUES (randomblob(1000))")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.New(p).Dump(context.Background(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, p) {
			t.Errorf("descriptor %s is still open on %s after the dump", e.Name(), target)
		}
	}
}
