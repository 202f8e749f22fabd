package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/store/internal/db"
)

// Tx is a write transaction. Everything a handler does through it — its
// state change and the events it emits — commits or rolls back together.
type Tx struct {
	*sql.Tx
	db         *DB
	q          *db.Queries
	emitted    int
	cause      string   // the id of the message being applied, if any
	caused     int      // events emitted for cause so far
	unprepared []string // queries to prepare once the transaction ends
	after      []func() // run once the transaction has committed
}

// AfterCommit runs fn once the transaction has committed, and never if it
// (or, in a batch, the handling of this message) rolls back: the place for
// in-memory signals (wake a loop, complete a waiter) that must not fire for
// a change that did not happen. fn runs on the committing goroutine: keep
// it short and non-blocking.
func (tx *Tx) AfterCommit(fn func()) {
	tx.after = append(tx.after, fn)
}

// Emit queues ev (a struct from the events catalog) in the outbox; the relay
// publishes it after the transaction commits. The event carries the trace
// context of ctx, so it continues the trace of whatever caused it.
func (tx *Tx) Emit(ctx context.Context, ev any) (id string, err error) {
	env, err := bus.NewEnvelope(ctx, tx.db.Source, ev)
	if err != nil {
		return "", fmt.Errorf("store: emit: %w", err)
	}
	if tx.cause != "" && tx.db.emitter != "" {
		// Emitted while applying a message, which every host applies:
		// the same id on every host (see Options.Emitter).
		env.SetID(bus.DerivedID(tx.db.emitter, tx.cause, strconv.Itoa(tx.caused)))
		tx.caused++
	}
	return env.ID, tx.EmitEnvelope(ctx, env)
}

// EmitEnvelope queues an envelope that is already built.
func (tx *Tx) EmitEnvelope(ctx context.Context, env bus.Envelope) error {
	h, err := json.Marshal(env.Header)
	if err != nil {
		return fmt.Errorf("store: emit: %w", err)
	}
	if err := tx.q.OutboxAdd(ctx, db.OutboxAddParams{
		ID: env.ID, Subject: env.Subject, Headers: string(h), Body: env.Body, CreatedAt: tx.db.now().UnixMilli(),
	}); err != nil {
		return fmt.Errorf("store: outbox: %w", err)
	}
	tx.emitted++
	return nil
}

// EmitEnvelopeOnce queues env unless an event with its id waits in the
// outbox already (a decision taken again before the first was
// published); it says whether it queued it.
func (tx *Tx) EmitEnvelopeOnce(ctx context.Context, env bus.Envelope) (bool, error) {
	h, err := json.Marshal(env.Header)
	if err != nil {
		return false, fmt.Errorf("store: emit: %w", err)
	}
	n, err := tx.q.OutboxAddOnce(ctx, db.OutboxAddOnceParams{
		ID: env.ID, Subject: env.Subject, Headers: string(h), Body: env.Body, CreatedAt: tx.db.now().UnixMilli(),
	})
	if err != nil {
		return false, fmt.Errorf("store: outbox: %w", err)
	}
	if n > 0 {
		tx.emitted++
	}
	return n > 0, nil
}

// Update runs fn in a write transaction and commits it, waking the relay
// when fn emitted events. Use it for changes that are not the handling of a
// consumed message (API calls, timers); handlers get their Tx from a Batch.
func (d *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	b, err := d.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(b.tx); err != nil {
		b.Rollback()
		return err
	}
	return b.Commit()
}

// Batch is one write transaction holding the handling of several consumed
// messages (group commit): all of them become durable with one commit (one
// fsync). A guarded batch (Begin) applies each message in its own
// savepoint, so one message's failure undoes only its own changes. An
// optimistic batch (BeginOptimistic) uses no savepoints, two statements
// fewer per message (a quarter more messages a second); the first failure
// poisons it instead: Apply returns ErrPoisoned, and the caller rolls the
// batch back and applies the same messages again in a guarded batch.
type Batch struct {
	tx         *Tx
	done       bool
	optimistic bool
	poisoned   bool
}

// ErrPoisoned is returned by Apply on an optimistic batch in which a message
// failed: the batch may hold part of that message's changes, so it can only
// be rolled back.
var ErrPoisoned = errors.New("store: optimistic batch poisoned by a failing message; roll it back and apply the messages in a guarded batch")

// Begin starts a guarded batch.
func (d *DB) Begin(ctx context.Context) (*Batch, error) {
	sqlTx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: begin %s: %w", d.Path, err)
	}
	tx := &Tx{Tx: sqlTx, db: d}
	tx.q = db.New(tx) // through Tx: cached prepared statements
	return &Batch{tx: tx}, nil
}

// BeginOptimistic starts an optimistic batch.
func (d *DB) BeginOptimistic(ctx context.Context) (*Batch, error) {
	b, err := d.Begin(ctx)
	if b != nil {
		b.optimistic = true
	}
	return b, err
}

// Apply handles the message id (consumed on subject) with fn, exactly once:
// if the inbox already holds id it returns applied=false without calling fn;
// otherwise fn's changes and the inbox entry are kept together, or, when fn
// fails, both are rolled back and fn's error returned.
//
// On an optimistic batch a failure returns an error wrapping both ErrPoisoned
// and the cause, and every later Apply and Commit fails with ErrPoisoned.
func (b *Batch) Apply(ctx context.Context, id, subject string, fn func(tx *Tx) error) (applied bool, err error) {
	if b.optimistic {
		return b.applyOptimistic(ctx, id, subject, fn)
	}
	if _, err := b.tx.ExecContext(ctx, "SAVEPOINT msg"); err != nil {
		return false, fmt.Errorf("store: savepoint: %w", err)
	}
	// The inbox entry first: when it is already there the message was
	// handled before, and fn must not run again.
	n, err := b.tx.q.InboxAdd(ctx, db.InboxAddParams{ID: id, Subject: subject, HandledAt: time.Now().UnixMilli()})
	if err != nil {
		err = fmt.Errorf("store: inbox: %w", err)
	} else if n == 0 {
		_, err := b.tx.ExecContext(ctx, "RELEASE msg")
		return false, err
	}
	emitted, after := b.tx.emitted, len(b.tx.after)
	if err == nil {
		err = b.tx.applying(id, fn)
	}
	if err != nil {
		b.tx.emitted, b.tx.after = emitted, b.tx.after[:after]
		_, rbErr := b.tx.ExecContext(ctx, "ROLLBACK TO msg")
		if rbErr == nil {
			_, rbErr = b.tx.ExecContext(ctx, "RELEASE msg")
		}
		if rbErr != nil {
			return false, fmt.Errorf("%w (and rolling back failed: %v)", err, rbErr)
		}
		return false, err
	}
	if _, err := b.tx.ExecContext(ctx, "RELEASE msg"); err != nil {
		return false, fmt.Errorf("store: release savepoint: %w", err)
	}
	return true, nil
}

func (b *Batch) applyOptimistic(ctx context.Context, id, subject string, fn func(tx *Tx) error) (applied bool, err error) {
	if b.poisoned {
		return false, ErrPoisoned
	}
	n, err := b.tx.q.InboxAdd(ctx, db.InboxAddParams{ID: id, Subject: subject, HandledAt: time.Now().UnixMilli()})
	switch {
	case err != nil:
		err = fmt.Errorf("store: inbox: %w", err)
	case n == 0:
		return false, nil
	default:
		err = b.tx.applying(id, fn)
	}
	if err != nil {
		b.poisoned = true
		return false, fmt.Errorf("%w: %w", ErrPoisoned, err)
	}
	return true, nil
}

// applying runs fn as the application of message id.
func (tx *Tx) applying(id string, fn func(tx *Tx) error) error {
	tx.cause, tx.caused = id, 0
	defer func() { tx.cause = "" }()
	return fn(tx)
}

// Commit makes the batch durable and wakes the relay if anything was
// emitted.
func (b *Batch) Commit() error {
	if b.poisoned {
		b.Rollback()
		return ErrPoisoned
	}
	if b.done {
		return nil
	}
	b.done = true
	err := b.tx.Commit()
	b.tx.db.prepare(context.Background(), b.tx.unprepared)
	if err != nil {
		return fmt.Errorf("store: commit %s: %w", b.tx.db.Path, err)
	}
	if b.tx.emitted > 0 {
		b.tx.db.wake()
	}
	for _, fn := range b.tx.after {
		fn()
	}
	return nil
}

// Rollback abandons the batch.
func (b *Batch) Rollback() {
	if !b.done {
		b.done = true
		b.tx.after = nil
		_ = b.tx.Rollback()
		b.tx.db.prepare(context.Background(), b.tx.unprepared)
	}
}

func (d *DB) wake() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}
