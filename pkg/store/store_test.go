package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/store"
)

var migrations = fstest.MapFS{
	"0001_things.sql": {Data: []byte(`CREATE TABLE things (name TEXT PRIMARY KEY);`)},
	"0002_more.sql":   {Data: []byte(`ALTER TABLE things ADD COLUMN n INTEGER NOT NULL DEFAULT 0;`)},
}

func open(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), path, store.NewOptions("lifeboat/test/store", migrations))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.R.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOpenAppliesEachMigrationOnce(t *testing.T) {
	path := t.TempDir() + "/svc/state.db"
	db := open(t, path)
	db.Close()
	db = open(t, path) // again: nothing re-applied (ALTER TABLE would fail)
	if n := count(t, db, `SELECT COUNT(*) FROM schema_migrations`); n != 6 {
		t.Fatalf("%d migrations recorded, want 6 (inbox/outbox, work queue, stream position, leader epochs + 2)", n)
	}
	var mode string
	db.R.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode %q, want wal", mode)
	}
	if err := db.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestFailingMigrationNamesItself(t *testing.T) {
	bad := fstest.MapFS{"0001_bad.sql": {Data: []byte(`CREATE TABLE oops (`)}}
	_, err := store.Open(context.Background(), t.TempDir()+"/state.db", store.NewOptions("test", bad))
	if err == nil || !strings.Contains(err.Error(), "0001_bad.sql") {
		t.Fatalf("error %v, want it to name the migration", err)
	}
}

func TestBatchAppliesOnceAndRollsBackFailures(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	ctx := context.Background()
	insert := func(name string) func(tx *store.Tx) error {
		return func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, name); err != nil {
				return err
			}
			_, err := tx.Emit(ctx, &events.HostUp{Host: name})
			return err
		}
	}
	b, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if applied, err := b.Apply(ctx, "e1", "s", insert("a")); !applied || err != nil {
		t.Fatalf("first apply: %v %v", applied, err)
	}
	if applied, err := b.Apply(ctx, "e1", "s", insert("a")); applied || err != nil {
		t.Fatalf("same id again in the batch: applied=%v err=%v, want a skipped duplicate", applied, err)
	}
	boom := errors.New("boom")
	if _, err := b.Apply(ctx, "e2", "s", func(tx *store.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failing apply returned %v", err)
	}
	if applied, err := b.Apply(ctx, "e3", "s", insert("c")); !applied || err != nil {
		t.Fatalf("apply after a failure: %v %v", applied, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM things`); n != 2 {
		t.Errorf("%d things, want 2 (the failed one rolled back)", n)
	}
	if n, _ := db.Pending(ctx); n != 2 {
		t.Errorf("%d outbox rows, want 2 (the failed one's event rolled back)", n)
	}
	if n, _ := db.Handled(ctx); n != 2 {
		t.Errorf("%d inbox rows, want 2", n)
	}
	// A later batch still sees e1 as handled.
	b, _ = db.Begin(ctx)
	if applied, _ := b.Apply(ctx, "e1", "s", insert("a")); applied {
		t.Error("e1 applied again in a later batch")
	}
	b.Rollback()
}

// TestOptimisticBatchIsPoisonedByAFailure: an optimistic batch applies and
// deduplicates like a guarded one; a failing message poisons it, so that it
// commits nothing, not even the messages before the failure, and the same
// messages applied again in a guarded batch end as a guarded batch would.
func TestOptimisticBatchIsPoisonedByAFailure(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	ctx := context.Background()
	insert := func(name string) func(tx *store.Tx) error {
		return func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, name); err != nil {
				return err
			}
			_, err := tx.Emit(ctx, &events.HostUp{Host: name})
			return err
		}
	}
	boom := errors.New("boom")
	failing := func(tx *store.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		return boom
	}

	// Without a failure: applied once, duplicates skipped, committed.
	b, err := db.BeginOptimistic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if applied, err := b.Apply(ctx, "e0", "s", insert("z")); !applied || err != nil {
		t.Fatalf("first apply: %v %v", applied, err)
	}
	if applied, err := b.Apply(ctx, "e0", "s", insert("z")); applied || err != nil {
		t.Fatalf("same id again in the batch: applied=%v err=%v, want a skipped duplicate", applied, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}

	// With one: poisoned, and nothing of it is kept.
	b, err = db.BeginOptimistic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if applied, err := b.Apply(ctx, "e1", "s", insert("a")); !applied || err != nil {
		t.Fatalf("apply before the failure: %v %v", applied, err)
	}
	if _, err := b.Apply(ctx, "e2", "s", failing); !errors.Is(err, boom) || !errors.Is(err, store.ErrPoisoned) {
		t.Fatalf("failing apply returned %v, want the cause and ErrPoisoned", err)
	}
	if _, err := b.Apply(ctx, "e3", "s", insert("c")); !errors.Is(err, store.ErrPoisoned) {
		t.Fatalf("apply after the failure returned %v, want ErrPoisoned", err)
	}
	if err := b.Commit(); !errors.Is(err, store.ErrPoisoned) {
		t.Fatalf("commit of a poisoned batch returned %v, want ErrPoisoned", err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM things`); n != 1 {
		t.Errorf("%d things after the poisoned batch, want only the earlier batch's", n)
	}

	// The same messages, guarded: the failing one alone is undone.
	b, err = db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		id string
		fn func(*store.Tx) error
	}{{"e1", insert("a")}, {"e2", failing}, {"e3", insert("c")}} {
		if _, err := b.Apply(ctx, m.id, "s", m.fn); err != nil && !errors.Is(err, boom) {
			t.Fatalf("guarded apply of %s: %v", m.id, err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM things`); n != 3 {
		t.Errorf("%d things, want 3 (z, a, c)", n)
	}
	if n, _ := db.Pending(ctx); n != 3 {
		t.Errorf("%d outbox rows, want 3", n)
	}
	if n, _ := db.Handled(ctx); n != 3 {
		t.Errorf("%d inbox rows, want 3 (e0, e1, e3)", n)
	}
}

func TestRelayPublishesWithEventIDAndDeletesAfterPubAck(t *testing.T) {
	_, b := bustest.Embedded(t)
	db := open(t, t.TempDir()+"/state.db")
	ctx := context.Background()
	var ids []string
	for _, h := range []string{"h1", "h2", "h3"} {
		err := db.Update(ctx, func(tx *store.Tx) error {
			id, err := tx.Emit(ctx, &events.HostDown{Host: h})
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	relay := store.NewRelay(db, bus.NewPublisher(b.JS), nil)
	n, err := relay.Flush(ctx)
	if err != nil || n != 3 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if p, _ := db.Pending(ctx); p != 0 {
		t.Fatalf("%d rows left in the outbox", p)
	}
	s, _ := b.JS.Stream(ctx, events.StreamEvents)
	for i, id := range ids {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(bus.HeaderMsgID) != id || m.Header.Get(bus.HeaderID) != id || m.Subject != "lifeboat.event.host.down" {
			t.Errorf("message %d: id %q subject %s, want %s in order", i, m.Header.Get(bus.HeaderMsgID), m.Subject, id)
		}
	}
}

func TestRelayKeepsRowsWhenPublishFails(t *testing.T) {
	_, b := bustest.Embedded(t)
	db := open(t, t.TempDir()+"/state.db")
	ctx := context.Background()
	if err := db.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Emit(ctx, &events.HostDown{Host: "h1"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// No stream takes the subject: the publish fails and the row stays.
	if err := b.JS.DeleteStream(ctx, events.StreamEvents); err != nil {
		t.Fatal(err)
	}
	relay := store.NewRelay(db, bus.NewPublisher(b.JS), nil)
	if _, err := relay.Flush(ctx); err == nil {
		t.Fatal("flush to a missing stream succeeded")
	}
	if p, _ := db.Pending(ctx); p != 1 {
		t.Fatalf("%d rows in the outbox, want the 1 that was not acknowledged", p)
	}
	// Once the stream is back, Run delivers it.
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	relay.Poll = 20 * time.Millisecond
	done := make(chan struct{})
	go func() { relay.Run(rctx); close(done) }()
	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if p, _ := db.Pending(ctx); p != 0 {
			return errors.New("still pending")
		}
		return nil
	})
	cancel()
	<-done
	s, _ := b.JS.Stream(ctx, events.StreamEvents)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d messages on the stream, want 1", info.State.Msgs)
	}
}
