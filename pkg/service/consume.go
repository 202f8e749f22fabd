package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/internal/faults"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/telemetry"
)

// outcome is what becomes of one message of a batch once the batch commits.
type outcome int

const (
	outcomeAck        outcome = iota // applied, or a duplicate
	outcomeDuplicate                 // already in the inbox: ack
	outcomeRetry                     // handler failed: redeliver after backoff
	outcomeDeadLetter                // cannot ever be handled: dead-letter, then ack
	outcomePoisoned                  // failed in an optimistic batch: apply again guarded
)

var outcomeNames = [...]string{telemetry.OutcomeOK, telemetry.OutcomeDuplicate, telemetry.OutcomeError, telemetry.OutcomeDeadLetter}

// consume reads c's channel until ctx ends, committing greedy batches: it
// waits for one message, takes whatever else is already waiting up to the
// batch size, and applies them in one transaction.
func (rt *Runtime) consume(ctx context.Context, c *consumer, ch <-chan *bus.Delivery) {
	batch := make([]*bus.Delivery, 0, rt.Deps.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			batch = append(batch, m)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case m, ok := <-ch:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		// The batch in flight is finished even when shutdown has begun.
		rt.handleBatch(context.WithoutCancel(ctx), c, batch)
	}
}

type result struct {
	outcome outcome
	reason  string
	class   string // for dead letters
}

// handleBatch applies msgs in one transaction and then acks, retries or
// dead-letters each. The batch is optimistic first (no savepoints); when a
// handler fails in it, it is rolled back and applied again guarded, where
// that message's failure undoes only its own changes. Failures are rare, so
// the messages before one are seldom handled twice (and a rolled-back
// handling leaves nothing but its consumer span).
func (rt *Runtime) handleBatch(ctx context.Context, c *consumer, msgs []*bus.Delivery) {
	durable := c.Durable
	b, results, err := rt.applyBatch(ctx, c, msgs, true)
	if errors.Is(err, store.ErrPoisoned) {
		b, results, err = rt.applyBatch(ctx, c, msgs, false)
	}
	if err != nil {
		rt.Logger.Error("cannot begin a transaction; messages will be redelivered", slog.String("error", err.Error()))
		for _, m := range msgs {
			m.Nak()
		}
		return
	}
	if err := b.Commit(); err != nil {
		rt.Logger.Error("commit failed; the batch will be redelivered", slog.String("error", err.Error()))
		for i, m := range msgs {
			if results[i].outcome != outcomeDeadLetter {
				m.Nak()
				continue
			}
			rt.deadLetter(ctx, durable, m, results[i])
		}
		return
	}
	faults.Point("service.after-commit")
	if _, leading := rt.Leading(); leading && c.events {
		rt.Nudge() // what was applied may need a decision
	}
	if rt.Deps.AfterCommit != nil {
		rt.Deps.AfterCommit(rt.Spec.Name, msgs)
	}
	for i, m := range msgs {
		r := results[i]
		if rt.Deps.Telemetry != nil {
			rt.Deps.Telemetry.Handled(rt.Spec.Name, m.Subject, outcomeNames[r.outcome])
		}
		switch r.outcome {
		case outcomeAck, outcomeDuplicate:
			if err := m.Ack(); err != nil {
				rt.Logger.Warn("ack failed; JetStream will redeliver and the inbox will drop it", slog.String("subject", m.Subject), slog.String("error", err.Error()))
			}
		case outcomeRetry:
			m.Nak()
		case outcomeDeadLetter:
			rt.deadLetter(ctx, durable, m, r)
		}
	}
}

// applyBatch applies msgs in a new batch, optimistic or guarded, and
// returns it uncommitted with each message's outcome. An optimistic batch
// that a handler failed in is rolled back and store.ErrPoisoned returned.
func (rt *Runtime) applyBatch(ctx context.Context, c *consumer, msgs []*bus.Delivery, optimistic bool) (*store.Batch, []result, error) {
	begin := rt.DB.Begin
	if optimistic {
		begin = rt.DB.BeginOptimistic
	}
	b, err := begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	results := make([]result, len(msgs))
	for i, wm := range msgs {
		results[i] = rt.handleOne(ctx, b, c, wm)
		if results[i].outcome == outcomePoisoned {
			b.Rollback()
			return nil, nil, store.ErrPoisoned
		}
	}
	if c.events {
		if seq := appliedThrough(msgs, results); seq > 0 {
			if err := b.Applied(ctx, c.Stream, seq); err != nil {
				b.Rollback()
				return nil, nil, err
			}
		}
	}
	return b, results, nil
}

// appliedThrough is the stream position a batch brings the database to:
// its last message, or, when one is to be retried, the message before the
// first such (the position must never pass an event not yet applied).
func appliedThrough(msgs []*bus.Delivery, results []result) uint64 {
	var seq uint64
	for i, m := range msgs {
		if results[i].outcome == outcomeRetry {
			if m.StreamSeq > 0 {
				return min(seq, m.StreamSeq-1)
			}
			return seq
		}
		seq = max(seq, m.StreamSeq)
	}
	return seq
}

// handleOne validates one message and applies it within batch b.
func (rt *Runtime) handleOne(ctx context.Context, b *store.Batch, c *consumer, d *bus.Delivery) (res result) {
	durable := c.Durable
	start := time.Now()
	ctx, span := telemetry.StartConsumerSpan(ctx, d.Header, d.Subject, durable, d.ID)
	defer func() {
		if res.outcome == outcomeRetry || res.outcome == outcomeDeadLetter {
			telemetry.RecordError(span, errors.New(res.reason))
		}
		span.End()
		if rt.Deps.Telemetry != nil {
			rt.Deps.Telemetry.HandleSeconds.WithLabelValues(rt.Spec.Name).Observe(time.Since(start).Seconds())
		}
	}()
	t, ev, err := decode(d)
	if err != nil {
		return result{outcomeDeadLetter, err.Error(), classOf(err)}
	}
	handle, ok := c.handler(t.Subject)
	if !ok {
		return result{outcomeDeadLetter, fmt.Sprintf("%s has no handler for %s on consumer %s", rt.Spec.Name, t.Subject, durable), classUnknownType}
	}
	m := Message{Delivery: d.Message, Type: t, Event: ev}
	var stack []byte   // of a panic, logged once the batch is guarded
	var refused string // why a command is not carried out
	applied, err := b.Apply(ctx, d.ID, d.Subject, func(tx *store.Tx) (err error) {
		defer func() {
			if p := recover(); p != nil {
				stack = debug.Stack()
				err = fmt.Errorf("handler panicked: %v", p)
			}
		}()
		if t.Kind == events.Command {
			// Every command leaves its trail, carried out or not.
			a := rt.judge(d.Subject, d.ID, d.HeaderValue, d.Body, d.Timestamp)
			if _, err := tx.Emit(ctx, &a); err != nil {
				return err
			}
			if refused = a.Reason; !a.Accepted {
				return nil
			}
		}
		if drop, err := fenced(ctx, tx, m.Delivery); drop || err != nil {
			if drop {
				rt.Logger.InfoContext(ctx, "a deposed leader's decision dropped", slog.String("subject", d.Subject), slog.String("id", d.ID),
					slog.String("leader", d.HeaderValue(HeaderLeader)), slog.String("epoch", d.HeaderValue(HeaderEpoch)))
			}
			return err
		}
		return handle(ctx, tx, m)
	})
	switch {
	case errors.Is(err, store.ErrPoisoned):
		// The guarded batch that follows decides what becomes of it.
		return result{outcome: outcomePoisoned}
	case err != nil:
		if stack != nil {
			rt.Logger.ErrorContext(ctx, "handler panicked", slog.String("subject", d.Subject), slog.String("id", d.ID),
				slog.String("error", err.Error()), slog.String("stack", string(stack)))
		}
		max := rt.Deps.Consumer(rt.Spec.Name).MaxDeliver
		if max > 0 && int(d.Delivered) >= max {
			return result{outcomeDeadLetter, fmt.Sprintf("handler failed on delivery %d of %d: %v", d.Delivered, max, err), classHandler}
		}
		rt.Logger.WarnContext(ctx, "handler failed; will retry", slog.String("subject", d.Subject), slog.String("id", d.ID),
			slog.Uint64("delivery", d.Delivered), slog.String("error", err.Error()))
		return result{outcome: outcomeRetry, reason: err.Error()}
	case !applied:
		return result{outcome: outcomeDuplicate}
	case refused != "":
		return result{outcomeDeadLetter, "command refused: " + refused, classUnsigned}
	}
	return result{outcome: outcomeAck}
}

// decode finds the message's type from its subject (the ce-type header, when
// present, must agree) and validates and decodes its body.
func decode(d *bus.Delivery) (events.Type, any, error) {
	t, ok := events.BySubject(d.Subject)
	if !ok {
		return t, nil, &errClass{classUnknownType, fmt.Errorf("unknown type: subject %q is not in the events catalog", d.Subject)}
	}
	if ce := d.HeaderValue(bus.HeaderType); ce != "" && ce != t.CEType {
		return t, nil, &errClass{classTypeMismatch, fmt.Errorf("ce-type %q does not match subject %q (want %q)", ce, d.Subject, t.CEType)}
	}
	ev, err := events.Decode(t, d.Body)
	if err != nil {
		return t, nil, err
	}
	return t, ev, nil
}

// deadLetter publishes a copy of d to lifeboat.dlq.<service> with the reason
// in a header, and acks d only once JetStream holds the copy: a dead letter
// is never lost.
func (rt *Runtime) deadLetter(ctx context.Context, durable string, d *bus.Delivery, r result) {
	reason := r.reason
	h := make(map[string][]string, len(d.Header)+5)
	for k, v := range d.Header {
		h[k] = v
	}
	set := func(k, v string) { h[k] = []string{v} }
	set(bus.HeaderDLQReason, reason)
	set(bus.HeaderDLQSubject, d.Subject)
	set(bus.HeaderDLQStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
	set(bus.HeaderDLQConsumer, durable)
	set(bus.HeaderDLQDelivered, strconv.FormatUint(d.Delivered, 10))
	id := "dlq-" + rt.Spec.Name + "-" + d.Stream + "-" + strconv.FormatUint(d.StreamSeq, 10)
	set(bus.HeaderMsgID, id)
	dl := bus.Envelope{ID: id, Subject: events.DLQSubject(rt.Spec.Name), Header: h, Body: d.Body}
	if err := rt.Publisher.Publish(ctx, dl); err != nil {
		rt.Logger.ErrorContext(ctx, "dead-letter publish failed; the message will be redelivered", slog.String("subject", d.Subject), slog.String("error", err.Error()))
		d.Nak()
		return
	}
	rt.Logger.WarnContext(ctx, "message dead-lettered", slog.String("subject", d.Subject), slog.String("id", d.ID), slog.String("reason", reason))
	rt.mu.Lock()
	rt.dead++
	rt.mu.Unlock()
	if rt.Deps.Telemetry != nil {
		rt.Deps.Telemetry.DeadLetters.WithLabelValues(rt.Spec.Name, r.class).Inc()
	}
	if err := d.Ack(); err != nil {
		rt.Logger.WarnContext(ctx, "ack of a dead-lettered message failed; it will be redelivered and dead-lettered again under the same id", slog.String("error", err.Error()))
	}
}

// Dead-letter classes: the bounded label set of the dead-letter metric.
const (
	classUnknownType  = "unknown_type"
	classTypeMismatch = "type_mismatch"
	classNotJSON      = "not_json"
	classSchema       = "schema_invalid"
	classHandler      = "handler_failed"
)

// errClass wraps a dead-letter reason with its class.
type errClass struct {
	class string
	err   error
}

func (e *errClass) Error() string { return e.err.Error() }
func (e *errClass) Unwrap() error { return e.err }

func classOf(err error) string {
	var ec *errClass
	switch {
	case errors.As(err, &ec):
		return ec.class
	case errors.Is(err, events.ErrNotJSON):
		return classNotJSON
	default:
		return classSchema
	}
}
