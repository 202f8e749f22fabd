package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/pkg/testtool"
)

// TestSnapshotUnderWriterAndCheckpoints backs a WAL database up while a
// writer commits and another connection checkpoints in a loop, so that
// pages of the database file are rewritten while the fast path copies it.
// Each transaction appends row id to log, sets ver = id on a random older
// row (pages all over the file change) and sets the counter to id. Each copy
// must hold exactly the transactions committed before its snapshot: ids
// 1..n with no gap, counter n, no ver above n, every transaction that
// returned before consistent_at and none that began after the snapshot was
// fixed. Before the copy starts, the test waits for more commits and
// checkpoints: were the read transaction not holding checkpoints back,
// those commits would reach the database file and the copy.
func TestSnapshotUnderWriterAndCheckpoints(t *testing.T) {
	t.Cleanup(wantPath(t, true))
	p := filepath.Join(t.TempDir(), "live.db")
	w := open(t, p)
	w.SetMaxOpenConns(1)
	mustExec(t, w, "PRAGMA journal_mode=WAL")
	mustExec(t, w, "CREATE TABLE log (id INTEGER PRIMARY KEY, ver INTEGER NOT NULL, pad BLOB)")
	mustExec(t, w, "CREATE TABLE counter (k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
	mustExec(t, w, "INSERT INTO counter VALUES (1, 0)")
	// About 4 MiB to start with, so that copying the file takes a while.
	const seeded = 2000
	mustExec(t, w, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO log(id, ver, pad) SELECT -i, 0, randomblob(2000) FROM n`, seeded)

	type commit struct{ began, done time.Time }
	var mu sync.Mutex
	var commits []commit // commits[i] is id i+1
	committed := func() int { mu.Lock(); defer mu.Unlock(); return len(commits) }
	var checkpoints atomic.Int64

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for id := 1; ctx.Err() == nil; id++ {
			began := time.Now()
			if err := writeTx(w, id, -1-rand.IntN(seeded)); err != nil {
				errs <- fmt.Errorf("writer: %w", err)
				return
			}
			done := time.Now()
			mu.Lock()
			commits = append(commits, commit{began, done})
			mu.Unlock()
		}
	})
	c := open(t, p)
	c.SetMaxOpenConns(1)
	wg.Go(func() {
		for ctx.Err() == nil {
			var busy, logFrames, done int
			if err := c.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
				errs <- fmt.Errorf("checkpointer: %w", err)
				return
			}
			checkpoints.Add(1)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })

	testtool.WaitFor(t, 20*time.Second, func() error {
		if n := committed(); n < 200 {
			return fmt.Errorf("writer committed %d transactions", n)
		}
		return nil
	})
	var pinnedAt time.Time
	t.Cleanup(sqlite.OnSnapshotPinned(func() { pinnedAt = time.Now() }))
	t.Cleanup(sqlite.BeforeRawCopy(func() {
		c0, k0 := committed(), checkpoints.Load()
		testtool.WaitFor(t, 20*time.Second, func() error {
			if c, k := committed(), checkpoints.Load(); c < c0+30 || k < k0+3 {
				return fmt.Errorf("%d commits and %d checkpoints since the snapshot", c-c0, k-k0)
			}
			return nil
		})
	}))
	k := sqlite.New(p)
	for round := range 4 {
		payload := t.TempDir()
		pinnedAt = time.Time{}
		info, err := k.Dump(context.Background(), payload)
		if err != nil {
			t.Fatal(err)
		}
		copyDB := open(t, filepath.Join(payload, sqlite.PayloadName))
		var ok string
		if err := copyDB.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("round %d: integrity_check of the copy: %q, %v", round, ok, err)
		}
		var n, lo, hi, maxVer, counter, old int
		if err := copyDB.QueryRow(`SELECT count(*), coalesce(min(id),0), coalesce(max(id),0),
				(SELECT max(ver) FROM log), (SELECT n FROM counter), (SELECT count(*) FROM log WHERE id < 0)
			FROM log WHERE id > 0`).Scan(&n, &lo, &hi, &maxVer, &counter, &old); err != nil {
			t.Fatal(err)
		}
		if n == 0 || lo != 1 || hi != n || counter != n || maxVer != n || old != seeded {
			t.Fatalf("round %d: the copy holds transactions %d..%d (%d of them), counter %d, highest ver %d, %d seeded rows: not the state after transaction %d",
				round, lo, hi, n, counter, maxVer, old, n)
		}
		mu.Lock()
		for i, c := range commits {
			id := i + 1
			if c.done.Before(info.ConsistentAt) && id > n {
				t.Errorf("round %d: transaction %d committed before consistent_at but is missing from the copy (which ends at %d)", round, id, n)
			}
			if id <= n && c.began.After(pinnedAt) {
				t.Errorf("round %d: transaction %d began committing after the snapshot was fixed but is in the copy", round, id)
			}
		}
		t.Logf("round %d: the copy holds transactions 1..%d of %d; %d checkpoints so far", round, n, len(commits), checkpoints.Load())
		mu.Unlock()
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// writeTx is transaction id: it appends row id, sets ver = id on row older
// and sets the counter to id.
func writeTx(w *sql.DB, id, older int) error {
	tx, err := w.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO log(id, ver, pad) VALUES (?, ?, randomblob(500))", []any{id, id}},
		{"UPDATE log SET ver = ?, pad = randomblob(2000) WHERE id = ?", []any{id, older}},
		{"UPDATE counter SET n = ? WHERE k = 1", []any{id}},
	} {
		if _, err := tx.Exec(q.sql, q.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
