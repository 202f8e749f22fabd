package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/internal/faults"
	"lifeboat.dev/pkg/store/internal/db"
)

// Relay publishes a database's outbox: in order, each row with Nats-Msg-Id
// set to its event id, removing a row only after JetStream acknowledged it.
// A crash after the PubAck and before the removal republishes the row; the
// stream's duplicate window and the consumers' inboxes drop the copy.
type Relay struct {
	db     *DB
	pub    *bus.Publisher
	logger *slog.Logger
	// Batch is how many rows are published per round trip.
	Batch int
	// Poll is how often the outbox is looked at without a wake-up (events
	// emitted by another process on the same file, retries after errors).
	Poll time.Duration
	// InboxKeep is how long consumed ids stay in the inbox.
	InboxKeep time.Duration
	// Report, when set, is told how many rows wait in the outbox after
	// each round (the lifeboat_outbox_pending gauge).
	Report func(pending int64)
}

// NewRelay returns a relay for d's outbox.
func NewRelay(d *DB, pub *bus.Publisher, logger *slog.Logger) *Relay {
	if logger == nil {
		logger = slog.Default()
	}
	return &Relay{db: d, pub: pub, logger: logger, Batch: 512, Poll: time.Second, InboxKeep: 7 * 24 * time.Hour}
}

// Run publishes until ctx ends, then flushes what is left for up to five
// seconds so that a clean shutdown leaves an empty outbox.
func (r *Relay) Run(ctx context.Context) {
	lastPrune := time.Time{}
	backoff := r.Poll
	for {
		_, err := r.Flush(ctx)
		if r.Report != nil {
			if n, perr := r.db.Pending(ctx); perr == nil {
				r.Report(n)
			}
		}
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("outbox relay: publish failed; will retry", slog.String("db", r.db.Path), slog.String("error", err.Error()), slog.Duration("retry_in", backoff))
		}
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			if n, err := db.New(r.db.w).InboxPrune(ctx, time.Now().Add(-r.InboxKeep).UnixMilli()); err != nil && ctx.Err() == nil {
				r.logger.Warn("inbox prune failed; will retry in an hour", slog.String("db", r.db.Path), slog.String("error", err.Error()))
			} else if err == nil && n > 0 {
				r.logger.Debug("inbox pruned", slog.Int64("rows", n))
			}
		}
		wait := r.Poll
		if err != nil {
			wait, backoff = backoff, min(backoff*2, 30*time.Second)
		} else {
			backoff = r.Poll
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := r.Flush(fctx); err != nil {
				r.logger.Warn("outbox relay: rows left unpublished at shutdown; they are published at the next start",
					slog.String("db", r.db.Path), slog.String("error", err.Error()))
			}
			cancel()
			return
		case <-r.db.notify:
		case <-time.After(wait):
		}
	}
}

// Flush publishes every row in the outbox now and returns how many it
// published.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	q := db.New(r.db.w)
	total := 0
	for {
		rows, err := q.OutboxNext(ctx, int64(r.Batch))
		if err != nil {
			return total, fmt.Errorf("outbox: read: %w", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		envs := make([]bus.Envelope, 0, len(rows))
		for _, row := range rows {
			var h map[string][]string
			if err := json.Unmarshal([]byte(row.Headers), &h); err != nil {
				return total, fmt.Errorf("outbox: row %d (%s) has unreadable headers: %w", row.Seq, row.ID, err)
			}
			envs = append(envs, bus.Envelope{ID: row.ID, Subject: row.Subject, Header: h, Body: row.Body})
		}
		// In outbox order; the acks are awaited together.
		if err := r.pub.Publish(ctx, envs...); err != nil {
			return total, err
		}
		faults.Point("store.relay.after-puback")
		if err := r.remove(ctx, rows); err != nil {
			return total, err
		}
		total += len(rows)
	}
}

func (r *Relay) remove(ctx context.Context, rows []db.Outbox) error {
	tx, err := r.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: remove: %w", err)
	}
	q := db.New(tx)
	for _, row := range rows {
		if err := q.OutboxDelete(ctx, row.Seq); err != nil {
			tx.Rollback()
			return fmt.Errorf("outbox: remove: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: remove: %w", err)
	}
	return nil
}

// Pending counts the rows waiting in the outbox.
func (d *DB) Pending(ctx context.Context) (int64, error) {
	return db.New(d.R).OutboxCount(ctx)
}

// Handled counts the ids in the inbox.
func (d *DB) Handled(ctx context.Context) (int64, error) {
	return db.New(d.R).InboxCount(ctx)
}
