package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestPinRetriesAndFallsBack: a commit that lands between the first read
// of the wal-index header and the snapshot makes the attempt fail (the
// snapshot is not the one the header describes) and the next one pin it;
// commits in every attempt send the pin to the write lock. Each copy holds
// every commit made before its snapshot: without the header's second read
// it would miss the one that landed in the window.
func TestPinRetriesAndFallsBack(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "live.db")
	w, err := sql.Open("sqlite", dsn(p, "_pragma=journal_mode(WAL)"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	if _, err := w.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB); INSERT INTO t(pad) VALUES (randomblob(100))"); err != nil {
		t.Fatal(err)
	}
	rows := 1
	for _, tc := range []struct {
		name         string
		commitsIn    int // attempts with a commit in their window
		wantAttempts int // 0: the write lock's fallback
	}{
		{"no commit", 0, 1},
		{"a commit in the first attempt", 1, 2},
		{"a commit in every attempt", pinAttempts, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook := func(attempt int) {
				if attempt <= tc.commitsIn {
					if _, err := w.Exec("INSERT INTO t(pad) VALUES (randomblob(100))"); err != nil {
						t.Error(err)
					}
					rows++
				}
			}
			betweenHeaderReads.Store(&hook)
			defer betweenHeaderReads.Store(nil)

			rdb, err := sql.Open("sqlite", dsn(p, "mode=ro"))
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			rd, err := rdb.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			ck, err := openCheckpointer(p)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			pin, _, reason, err := pinSnapshot(ctx, p, p, ck, rd)
			if err != nil || pin == nil {
				t.Fatalf("pinSnapshot: %v, %v (%s)", pin, err, reason)
			}
			if pin.attempts != tc.wantAttempts || (tc.wantAttempts == 0) != (pin.held > 0) {
				t.Errorf("pinned in %d attempts, writers held %v; want %d attempts (0: under the write lock)", pin.attempts, pin.held, tc.wantAttempts)
			}
			var n int
			if err := rd.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != rows {
				t.Errorf("the pinned snapshot holds %d rows, %d were committed before it", n, rows)
			}
			if _, err := rd.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}

			// The whole dump, through the same pin.
			payload := t.TempDir()
			if _, err := New(p).Dump(ctx, payload); err != nil {
				t.Fatal(err)
			}
			cp, err := sql.Open("sqlite", dsn(filepath.Join(payload, PayloadName), "mode=ro"))
			if err != nil {
				t.Fatal(err)
			}
			defer cp.Close()
			if err := cp.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != rows {
				t.Errorf("the copy holds %d rows, %d were committed before its snapshot", n, rows)
			}
		})
	}
}
