package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"lifeboat.dev/pkg/store/internal/db"
	"lifeboat.dev/pkg/telemetry"
)

// The work queue: where long work lives (a backup, a transfer, a DNS update
// and its verification). A handler must stay short and have no effect
// outside its transaction — in a poisoned batch it runs twice and its first
// run is rolled back — so it enqueues a job in its transaction (Tx.Enqueue)
// and a worker runs the job after the commit. The job's outcome (the events
// it emits, the state it changes) commits in the same transaction that
// removes the job, so a job finished is never run again, and one cut short
// by a crash or a shutdown is run again at the next start.
//
// Designed for several hosts: a job has an owner and runs only where the
// owner check holds; every host may hold the same job (enqueued by every
// host's handler of the same event, under the same id), and the hosts that
// do not own it remove it when they apply the event its owner emitted on
// completion (Tx.WorkDone), so a new owner never re-runs finished work.

// Work is a job to enqueue.
type Work struct {
	// ID names the job; derive it from its cause (the event or command id),
	// so that applying the same event twice, or on several hosts, enqueues
	// it once. Enqueue refuses an empty ID.
	ID string
	// Kind selects the worker that runs it.
	Kind string
	// Key serializes jobs: of one Kind and Key, one runs at a time, in the
	// order they were enqueued (a plan's backups, a DNS name's changes).
	// Empty means the ID: no ordering with other jobs.
	Key string
	// Owner says who may run it; the queue's Owns decides. Empty: whoever
	// holds this database.
	Owner string
	// Payload is encoded as JSON; the worker decodes it.
	Payload any
	// NotBefore delays the job; zero means at once.
	NotBefore time.Time
}

// Enqueue adds w to the queue; it runs once the transaction has committed
// (the queue is woken then, not polled). It returns false when a job with
// w.ID is queued already.
func (tx *Tx) Enqueue(ctx context.Context, w Work) (bool, error) {
	if w.ID == "" || w.Kind == "" {
		return false, errors.New("store: enqueue: a job needs an ID and a Kind")
	}
	if w.Key == "" {
		w.Key = w.ID
	}
	payload, err := json.Marshal(w.Payload)
	if err != nil {
		return false, fmt.Errorf("store: enqueue %s %s: %w", w.Kind, w.ID, err)
	}
	h := map[string][]string{}
	telemetry.InjectHeaders(ctx, h)
	trace, _ := json.Marshal(h)
	now := tx.db.now()
	due := now
	if w.NotBefore.After(now) {
		due = w.NotBefore
	}
	n, err := tx.q.WorkAdd(ctx, db.WorkAddParams{
		ID: w.ID, Kind: w.Kind, Key: w.Key, Owner: w.Owner, Payload: payload, Trace: string(trace),
		DueAt: due.UnixMilli(), CreatedAt: now.UnixMilli(),
	})
	if err != nil {
		return false, fmt.Errorf("store: enqueue %s %s: %w", w.Kind, w.ID, err)
	}
	if n > 0 {
		tx.AfterCommit(tx.db.wakeWork)
	}
	return n > 0, nil
}

// WorkDone removes the job id, whoever runs it: its outcome was applied
// here (from the event its owner emitted). A worker still running it on this
// host finds it gone and commits nothing. It returns false when there was
// no such job.
func (tx *Tx) WorkDone(ctx context.Context, id string) (bool, error) {
	n, err := tx.q.WorkDelete(ctx, id)
	if err != nil {
		return false, fmt.Errorf("store: work %s: %w", id, err)
	}
	return n > 0, nil
}

// WorkKick makes the waiting jobs of kind (of key, unless key is empty)
// due now instead of after their backoff, and wakes the queue once the
// transaction commits. It returns how many it made due.
func (tx *Tx) WorkKick(ctx context.Context, kind, key string) (int64, error) {
	n, err := tx.q.WorkKick(ctx, db.WorkKickParams{Now: tx.db.now().UnixMilli(), Kind: kind, Key: key})
	if err != nil {
		return 0, fmt.Errorf("store: kick %s work: %w", kind, err)
	}
	if n > 0 {
		tx.AfterCommit(tx.db.wakeWork)
	}
	return n, nil
}

// Job is a queued job as a worker sees it.
type Job struct {
	ID, Kind, Key, Owner string
	Payload              []byte
	// Attempt counts the starts of this job, this one included (from 1).
	Attempt int
	// LastError is why the previous attempt failed.
	LastError string
	Enqueued  time.Time
}

// Decode reads the job's payload into v.
func (j Job) Decode(v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return fmt.Errorf("store: job %s %s: payload unreadable: %w", j.Kind, j.ID, err)
	}
	return nil
}

// Finish records a job's outcome. It runs in the transaction that removes
// the job, so the outcome commits once: emit the job's events and change
// state through tx. A nil Finish just removes the job.
type Finish func(ctx context.Context, tx *Tx) error

// Worker runs a job of one kind. It may take long; it must stop when ctx
// ends (shutdown: the job is given back untried and runs at the next start).
// It returns the outcome to commit, or an error to run the job again after a
// backoff (the job sees how many attempts it had in Job.Attempt, and decides
// itself when to give up, by returning a Finish that records the failure).
type Worker func(ctx context.Context, j Job) (Finish, error)

// ErrJobGone is returned when a finished job was no longer in the queue:
// removed by WorkDone (its owner elsewhere finished it) or taken away.
// Nothing was committed.
var ErrJobGone = errors.New("store: the job is no longer queued here; its outcome was not recorded")

// QueueOptions shape a Queue.
type QueueOptions struct {
	// Workers run the jobs, by kind. A job whose kind has no worker stays
	// queued (and is logged).
	Workers map[string]Worker
	// Concurrency bounds the jobs of one kind running at once (jobs of one
	// key never run together). Default 4.
	Concurrency int
	// Owns says whether this process may run a job with the given owner;
	// nil runs every job.
	Owns func(owner string) bool
	// Lease is how long a started job is held without renewal; the worker
	// renews it at a third of that while it runs. Default 30 s.
	Lease time.Duration
	// Backoff is the delay before attempt n+1 after attempt n failed;
	// KindBackoff overrides it for some kinds.
	Backoff     func(attempt int) time.Duration
	KindBackoff map[string]func(attempt int) time.Duration
	// Idle bounds how long the queue sleeps without a wake-up, so that a
	// job whose owner check turned true starts. Default 5 s.
	Idle   time.Duration
	Logger *slog.Logger
}

// NewQueueOptions returns the defaults.
func NewQueueOptions() QueueOptions {
	return QueueOptions{
		Workers: map[string]Worker{}, Concurrency: 4, Lease: 30 * time.Second, Idle: 5 * time.Second,
		Backoff: ExpBackoff(time.Second, 5*time.Minute), Logger: slog.Default(),
	}
}

// ExpBackoff doubles from first up to most.
func ExpBackoff(first, most time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < most; i++ {
			d *= 2
		}
		return min(d, most)
	}
}

// Queue runs a database's jobs.
type Queue struct {
	db   *DB
	opts QueueOptions

	mu      sync.Mutex
	running map[string]bool // kind + "\x00" + key
	perKind map[string]int
	jobs    sync.WaitGroup
	done    chan struct{} // a job ended: look again
	warned  map[string]bool
}

// NewQueue returns the queue of d's jobs; Run runs them.
func NewQueue(d *DB, opts QueueOptions) *Queue {
	def := NewQueueOptions()
	if opts.Concurrency <= 0 {
		opts.Concurrency = def.Concurrency
	}
	if opts.Lease <= 0 {
		opts.Lease = def.Lease
	}
	if opts.Backoff == nil {
		opts.Backoff = def.Backoff
	}
	if opts.Idle <= 0 {
		opts.Idle = def.Idle
	}
	if opts.Logger == nil {
		opts.Logger = def.Logger
	}
	return &Queue{db: d, opts: opts, running: map[string]bool{}, perKind: map[string]int{}, done: make(chan struct{}, 1), warned: map[string]bool{}}
}

// Run starts due jobs until ctx ends, then cancels the running ones and
// waits for them (each is given back untried). An error is the database's.
func (q *Queue) Run(ctx context.Context) error {
	defer q.jobs.Wait()
	if err := db.New(q.db.w).WorkReleaseAll(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("work queue: %w", err)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-q.db.workNotify:
		case <-q.done:
		}
		wait, err := q.startDue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			q.opts.Logger.Warn("work queue: reading jobs failed; will retry", slog.String("error", err.Error()))
			wait = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// startDue starts every job that may run now and returns how long to wait
// for the next one.
func (q *Queue) startDue(ctx context.Context) (time.Duration, error) {
	heads, err := db.New(q.db.r).WorkHeads(ctx)
	if err != nil {
		return 0, err
	}
	now := q.db.now().UnixMilli()
	wait := q.opts.Idle
	later := func(at int64) { wait = min(wait, time.Duration(at-now+1)*time.Millisecond) }
	for _, h := range heads {
		run, ok := q.opts.Workers[h.Kind]
		switch {
		case !ok:
			q.warnOnce(h.Kind, "work queue: no worker for this kind of job; it stays queued")
			continue
		case q.opts.Owns != nil && !q.opts.Owns(h.Owner):
			continue
		case h.DueAt > now:
			later(h.DueAt)
			continue
		case h.LeasedUntil > now:
			later(h.LeasedUntil)
			continue
		}
		slot := h.Kind + "\x00" + h.Key
		q.mu.Lock()
		busy := q.running[slot] || q.perKind[h.Kind] >= q.opts.Concurrency
		q.mu.Unlock()
		if busy {
			continue // a job's end wakes the loop
		}
		until := now + q.opts.Lease.Milliseconds()
		n, err := db.New(q.db.w).WorkLease(ctx, db.WorkLeaseParams{Until: until, Seq: h.Seq, Held: h.LeasedUntil})
		if err != nil {
			return 0, err
		}
		if n == 0 {
			continue // gone or taken since it was read
		}
		q.mu.Lock()
		q.running[slot] = true
		q.perKind[h.Kind]++
		q.mu.Unlock()
		q.jobs.Add(1)
		go func() {
			defer q.jobs.Done()
			q.run(ctx, run, h, until)
			q.mu.Lock()
			delete(q.running, slot)
			q.perKind[h.Kind]--
			q.mu.Unlock()
			select {
			case q.done <- struct{}{}:
			default:
			}
		}()
	}
	return max(wait, time.Millisecond), nil
}

func (q *Queue) warnOnce(kind, msg string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.warned[kind] {
		q.warned[kind] = true
		q.opts.Logger.Warn(msg, slog.String("kind", kind))
	}
}

// run runs one leased job and records what became of it.
func (q *Queue) run(ctx context.Context, work Worker, h db.Work, held int64) {
	j := Job{ID: h.ID, Kind: h.Kind, Key: h.Key, Owner: h.Owner, Payload: h.Payload,
		Attempt: int(h.Attempts) + 1, LastError: h.LastError, Enqueued: time.UnixMilli(h.CreatedAt)}
	log := q.opts.Logger.With(slog.String("job", j.ID), slog.String("kind", j.Kind), slog.String("key", j.Key), slog.Int("attempt", j.Attempt))
	var tr map[string][]string
	if h.Trace != "" {
		if err := json.Unmarshal([]byte(h.Trace), &tr); err != nil {
			// The job still runs, only outside the trace that queued it.
			log.Warn("work queue: the job's trace context is unreadable; it runs in a new trace", slog.String("error", err.Error()))
		}
	}
	jobCtx, cancel := context.WithCancel(telemetry.ExtractHeaders(ctx, tr))
	defer cancel()

	// Renew the lease while the job runs; losing it cancels the job.
	var heldMu sync.Mutex
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(q.opts.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-t.C:
			}
			heldMu.Lock()
			until := q.db.now().UnixMilli() + q.opts.Lease.Milliseconds()
			n, err := db.New(q.db.w).WorkRenew(jobCtx, db.WorkRenewParams{Until: until, Seq: h.Seq, Held: held})
			if err == nil && n == 1 {
				held = until
			}
			heldMu.Unlock()
			if err == nil && n == 0 {
				log.Warn("work queue: the job was removed while it ran; stopping it")
				cancel()
				return
			}
		}
	}()
	finish, err := runWorker(jobCtx, work, j, log)
	cancel()
	// The outcome is recorded whatever becomes of the job's context (it
	// keeps the trace).
	fctx := context.WithoutCancel(jobCtx)
	<-renewed
	heldMu.Lock()
	defer heldMu.Unlock()

	bg := context.WithoutCancel(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopped by the shutdown: given back untried, run at the next start.
		if rerr := db.New(q.db.w).WorkRelease(bg, db.WorkReleaseParams{Seq: h.Seq, LeasedUntil: held}); rerr != nil {
			log.Warn("work queue: giving a stopped job back failed; the next start takes it anyway", slog.String("error", rerr.Error()))
		}
		return
	case err == nil:
		err = q.db.Update(bg, func(tx *Tx) error {
			n, err := tx.q.WorkFinish(bg, db.WorkFinishParams{Seq: h.Seq, LeasedUntil: held})
			if err != nil {
				return err
			}
			if n == 0 {
				return ErrJobGone
			}
			if finish == nil {
				return nil
			}
			return finish(fctx, tx)
		})
		if errors.Is(err, ErrJobGone) {
			log.Info("work queue: the job was finished elsewhere meanwhile; this outcome is dropped")
			return
		}
		if err == nil {
			return
		}
		err = fmt.Errorf("recording the outcome: %w", err)
	}
	backoff := q.opts.Backoff
	if b, ok := q.opts.KindBackoff[j.Kind]; ok {
		backoff = b
	}
	delay := backoff(j.Attempt)
	log.Warn("work queue: job failed; will retry", slog.String("error", err.Error()), slog.Duration("retry_in", delay))
	if rerr := db.New(q.db.w).WorkRetry(bg, db.WorkRetryParams{
		DueAt: q.db.now().Add(delay).UnixMilli(), LastError: err.Error(), Seq: h.Seq, LeasedUntil: held,
	}); rerr != nil {
		log.Error("work queue: recording a failed attempt failed; the lease's end frees the job", slog.String("error", rerr.Error()))
	}
}

// runWorker runs w, turning a panic into an error (the job is retried).
func runWorker(ctx context.Context, w Worker, j Job, log *slog.Logger) (f Finish, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("worker panicked: %v", p)
			log.ErrorContext(ctx, "work queue: worker panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
	}()
	return w(ctx, j)
}

// QueuedJob is a queued job as status shows it.
type QueuedJob struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Key       string    `json:"key"`
	Owner     string    `json:"owner,omitempty"`
	Attempts  int       `json:"attempts"`
	DueAt     time.Time `json:"due_at"`
	Running   bool      `json:"running"`
	LastError string    `json:"last_error,omitempty"`
}

// Jobs lists up to limit queued jobs, oldest first.
func (d *DB) Jobs(ctx context.Context, limit int) ([]QueuedJob, error) {
	rows, err := db.New(d.r).WorkList(ctx, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("store: work: %w", err)
	}
	now := d.now().UnixMilli()
	out := make([]QueuedJob, 0, len(rows))
	for _, r := range rows {
		out = append(out, QueuedJob{ID: r.ID, Kind: r.Kind, Key: r.Key, Owner: r.Owner, Attempts: int(r.Attempts),
			DueAt: time.UnixMilli(r.DueAt).UTC(), Running: r.LeasedUntil > now, LastError: r.LastError})
	}
	return out, nil
}

func (d *DB) wakeWork() {
	select {
	case d.workNotify <- struct{}{}:
	default:
	}
}
