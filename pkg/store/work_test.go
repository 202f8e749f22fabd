package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/store"
)

// queueRun runs a queue over db with workers until the test ends or stop
// is called; stop returns once the queue and its jobs have ended.
func queueRun(t *testing.T, db *store.DB, opts store.QueueOptions) (stop func()) {
	t.Helper()
	if opts.Backoff == nil {
		opts.Backoff = func(int) time.Duration { return 5 * time.Millisecond }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.NewQueue(db, opts).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("queue: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueue(t *testing.T, db *store.DB, works ...store.Work) {
	t.Helper()
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		for _, w := range works {
			if _, err := tx.Enqueue(context.Background(), w); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// record is a worker that notes each payload it ran, in order, and
// records it in things on finish.
type record struct {
	mu  sync.Mutex
	ran []string
}

func (r *record) worker(ctx context.Context, j store.Job) (store.Finish, error) {
	var p string
	if err := j.Decode(&p); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.ran = append(r.ran, p)
	r.mu.Unlock()
	return func(ctx context.Context, tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, p)
		return err
	}, nil
}

func (r *record) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ran)
}

func TestWorkRunsAfterCommitOnceAndRecordsItsOutcome(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	rec := &record{}
	queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"copy": rec.worker}})

	// Rolled back: never runs.
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Enqueue(context.Background(), store.Work{ID: "gone", Kind: "copy", Payload: "gone"}); err != nil {
			return err
		}
		return errors.New("changed my mind")
	})
	if err == nil {
		t.Fatal("update did not fail")
	}
	// Enqueued twice under one id: runs once.
	enqueue(t, db, store.Work{ID: "a", Kind: "copy", Payload: "a"}, store.Work{ID: "a", Kind: "copy", Payload: "a-again"})
	enqueue(t, db, store.Work{ID: "b", Kind: "copy", Payload: "b"})
	bustest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := count(t, db, `SELECT COUNT(*) FROM things`); n != 2 {
			return fmt.Errorf("%d outcomes recorded", n)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM work`); n != 0 {
			return fmt.Errorf("%d jobs still queued", n)
		}
		return nil
	})
	got := rec.got()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ran %v, want [a b]", got)
	}
}

func TestWorkOfOneKeyRunsOneAtATimeInOrder(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	var running, most atomic.Int32
	rec := &record{}
	slow := func(ctx context.Context, j store.Job) (store.Finish, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// Give a second job of the key every chance to start meanwhile.
		for range 20 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			time.Sleep(time.Millisecond)
		}
		return rec.worker(ctx, j)
	}
	queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"dns": slow}, Concurrency: 8})
	var want []string
	var works []store.Work
	for i := range 6 {
		p := fmt.Sprintf("change-%d", i)
		want = append(want, p)
		works = append(works, store.Work{ID: p, Kind: "dns", Key: "www.example.com", Payload: p})
	}
	enqueue(t, db, works...)
	bustest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := len(rec.got()); n != len(want) {
			return fmt.Errorf("%d of %d ran", n, len(want))
		}
		return nil
	})
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v in order", got, want)
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d jobs of one key ran at once", m)
	}
}

func TestFailedWorkIsRetriedWithItsAttemptAndLastError(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	var attempts []int
	var lastErrs []string
	var mu sync.Mutex
	flaky := func(ctx context.Context, j store.Job) (store.Finish, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, j.Attempt)
		lastErrs = append(lastErrs, j.LastError)
		switch j.Attempt {
		case 1:
			return nil, errors.New("server unreachable")
		case 2:
			panic("worker bug")
		}
		return nil, nil
	}
	queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"flaky": flaky}})
	enqueue(t, db, store.Work{ID: "j", Kind: "flaky"})
	bustest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := count(t, db, `SELECT COUNT(*) FROM work`); n != 0 {
			return fmt.Errorf("%d jobs still queued", n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Fatalf("attempts %v, want [1 2 3]", attempts)
	}
	if lastErrs[1] != "server unreachable" || !errorsContain(lastErrs[2], "worker panicked: worker bug") {
		t.Fatalf("last errors %q", lastErrs)
	}
}

func errorsContain(s, sub string) bool { return len(s) >= len(sub) && s[:len(sub)] == sub }

func TestWorkRunsOnlyWhereItsOwnerCheckHolds(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	rec := &record{}
	queueRun(t, db, store.QueueOptions{
		Workers: map[string]store.Worker{"backup": rec.worker},
		Owns:    func(owner string) bool { return owner == "host:hot" },
	})
	enqueue(t, db,
		store.Work{ID: "cold-1", Kind: "backup", Owner: "host:cold", Payload: "cold-1"},
		store.Work{ID: "hot-1", Kind: "backup", Owner: "host:hot", Payload: "hot-1"},
	)
	bustest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := rec.got(); !slices.Equal(got, []string{"hot-1"}) {
			return fmt.Errorf("ran %v", got)
		}
		return nil
	})
	// cold's job stays queued for cold; applying the event cold emitted on
	// completion removes it here.
	if n := count(t, db, `SELECT COUNT(*) FROM work WHERE id = 'cold-1'`); n != 1 {
		t.Fatalf("cold's job: %d rows, want 1", n)
	}
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		ok, err := tx.WorkDone(context.Background(), "cold-1")
		if err == nil && !ok {
			err = errors.New("WorkDone found no job")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM work`); n != 0 {
		t.Fatalf("%d jobs left", n)
	}
}

func TestWorkFinishedElsewhereCommitsNothing(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	started, release := make(chan struct{}), make(chan struct{})
	finished := make(chan struct{})
	worker := func(ctx context.Context, j store.Job) (store.Finish, error) {
		close(started)
		<-release
		return func(ctx context.Context, tx *store.Tx) error {
			close(finished) // never: the job is gone
			return nil
		}, nil
	}
	stop := queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"x": worker}})
	enqueue(t, db, store.Work{ID: "j", Kind: "x"})
	<-started
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.WorkDone(context.Background(), "j")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	close(release)
	stop()
	select {
	case <-finished:
		t.Fatal("the outcome of a job finished elsewhere was committed")
	default:
	}
}

func TestShutdownCancelsWorkAndTheNextStartRunsIt(t *testing.T) {
	path := t.TempDir() + "/state.db"
	db := open(t, path)
	started := make(chan struct{})
	var attempts []int
	blocking := func(ctx context.Context, j store.Job) (store.Finish, error) {
		attempts = append(attempts, j.Attempt)
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	stop := queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"long": blocking}})
	enqueue(t, db, store.Work{ID: "j", Kind: "long", Payload: "j"})
	<-started
	stop() // returns only once the job has ended
	if !slices.Equal(attempts, []int{1}) {
		t.Fatalf("attempts %v", attempts)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM work WHERE leased_until = 0 AND attempts = 0`); n != 1 {
		t.Fatalf("the stopped job was not given back untried")
	}
	rec := &record{}
	queueRun(t, db, store.QueueOptions{Workers: map[string]store.Worker{"long": rec.worker}})
	bustest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := rec.got(); !slices.Equal(got, []string{"j"}) {
			return fmt.Errorf("ran %v", got)
		}
		return nil
	})
}

func TestAfterCommitFiresOnlyForWhatCommitted(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	var fired []string
	note := func(s string) func() { return func() { fired = append(fired, s) } }
	ctx := context.Background()

	_ = db.Update(ctx, func(tx *store.Tx) error { tx.AfterCommit(note("rolled-back")); return errors.New("no") })
	_ = db.Update(ctx, func(tx *store.Tx) error { tx.AfterCommit(note("committed")); return nil })

	// In a guarded batch, a failing message's signals are dropped with its
	// changes; the others fire after the commit.
	b, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, "m1", "s", func(tx *store.Tx) error { tx.AfterCommit(note("m1")); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, "m2", "s", func(tx *store.Tx) error { tx.AfterCommit(note("m2")); return errors.New("fails") }); err == nil {
		t.Fatal("m2 did not fail")
	}
	if len(fired) != 1 {
		t.Fatalf("fired before the batch committed: %v", fired)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// A poisoned optimistic batch fires nothing.
	ob, err := db.BeginOptimistic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = ob.Apply(ctx, "m3", "s", func(tx *store.Tx) error { tx.AfterCommit(note("m3")); return nil })
	_, _ = ob.Apply(ctx, "m4", "s", func(tx *store.Tx) error { return errors.New("poison") })
	ob.Rollback()
	if want := []string{"committed", "m1"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
}

func TestEnqueueRefusesAJobWithoutIDOrKind(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Enqueue(context.Background(), store.Work{Kind: "x"})
		return err
	})
	if err == nil {
		t.Fatal("a job without an ID was enqueued")
	}
}

func TestAKindsOwnBackoffIsUsed(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	asked := make(chan int, 10)
	fails := func(ctx context.Context, j store.Job) (store.Finish, error) {
		if j.Attempt < 3 {
			return nil, errors.New("not yet")
		}
		return nil, nil
	}
	queueRun(t, db, store.QueueOptions{
		Workers:     map[string]store.Worker{"dns": fails},
		Backoff:     func(int) time.Duration { t.Error("the default backoff was used"); return time.Millisecond },
		KindBackoff: map[string]func(int) time.Duration{"dns": func(n int) time.Duration { asked <- n; return time.Millisecond }},
	})
	enqueue(t, db, store.Work{ID: "j", Kind: "dns"})
	for _, want := range []int{1, 2} {
		select {
		case n := <-asked:
			if n != want {
				t.Fatalf("backoff asked for attempt %d, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the kind's backoff was not asked")
		}
	}
}

// TestAKickMakesAWaitingJobDueNow: a job backing off for an hour runs at
// once when its kind and key are kicked; another key's waits on.
func TestAKickMakesAWaitingJobDueNow(t *testing.T) {
	db := open(t, t.TempDir()+"/state.db")
	ran := make(chan string, 10)
	worker := func(ctx context.Context, j store.Job) (store.Finish, error) {
		ran <- j.Key
		if j.Attempt == 1 {
			return nil, errors.New("target unreachable")
		}
		return nil, nil
	}
	queueRun(t, db, store.QueueOptions{
		Workers: map[string]store.Worker{"ship": worker},
		Backoff: func(int) time.Duration { return time.Hour },
	})
	enqueue(t, db, store.Work{ID: "a", Kind: "ship", Key: "cold"}, store.Work{ID: "b", Kind: "ship", Key: "offsite"})
	for range 2 {
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Fatal("the jobs did not run")
		}
	}
	kick := func(key string) int64 {
		var n int64
		if err := db.Update(context.Background(), func(tx *store.Tx) (err error) {
			n, err = tx.WorkKick(context.Background(), "ship", key)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The failed attempts' backoff may still be being recorded.
	bustest.WaitFor(t, 10*time.Second, 0, func() error {
		if n := kick("cold"); n != 1 {
			return fmt.Errorf("kick made %d jobs due, want 1", n)
		}
		return nil
	})
	select {
	case k := <-ran:
		if k != "cold" {
			t.Fatalf("the kick ran %s's job", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the kicked job did not run")
	}
	select {
	case k := <-ran:
		t.Fatalf("%s's job ran without a kick", k)
	case <-time.After(100 * time.Millisecond):
	}
}
