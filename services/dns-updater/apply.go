package dnsupdater

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/telemetry"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// The Run loop applies queued changes one at a time, the oldest due first
// and in order per name. Why outside the handler's transaction: a DNS
// update and its verification can take seconds (or a timeout per try),
// and the embedded provider writes through the store's single writer
// connection in its own transaction, so calling it inside a handler would
// deadlock. Why it is still exactly once: the change was queued in the
// transaction that marked its event handled; the provider's Set replaces
// the record set, so applying a change again after a crash gives the same
// records; and the outcome (the queued row deleted, the history row, the
// epoch and the outcome event in the outbox) commits in one transaction,
// at most once per row. The value before the change is saved on the row
// before the first Set, so a change retried after a crash still reports
// the true old value.

// Idle polling bounds: the loop looks for due changes (retries) at least
// every maxIdle; a queued change wakes it at once.
const (
	minIdle = 5 * time.Millisecond
	maxIdle = 250 * time.Millisecond
)

// run applies queued changes until ctx ends.
func (s *Service) run(ctx context.Context) error {
	if s.p == nil {
		<-ctx.Done()
		return nil
	}
	defer s.closeProvider()
	idle := minIdle
	for {
		did, err := s.applyNext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Error("applying a dns change failed; will try again", slog.String("error", err.Error()))
			did = false
			idle = maxIdle
		}
		if did {
			idle = minIdle
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			idle = minIdle
		case <-time.After(idle):
			idle = min(2*idle, maxIdle)
		}
	}
}

// applyNext applies the next due change, if any, and says whether there
// was one.
func (s *Service) applyNext(ctx context.Context) (bool, error) {
	// Read through the single writer connection, not a reader: a handler
	// wakes the loop from inside its batch's transaction, which holds the
	// writer until it commits, so this read waits for the change to be
	// committed instead of missing it and sleeping.
	c, err := db.New(s.rt.DB.Writer()).NextChange(ctx, time.Now().UnixMilli())
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("next change: %w", err)
	}
	return true, s.apply(ctx, c)
}

// apply makes change c at the provider, verifies it, and records the
// outcome. A temporary failure (unreachable server, SERVFAIL, not yet
// verified) is retried with backoff up to dns.retry.attempts; any other
// ends the change with DNSUpdateFailed. An error returned is the
// database's or the shutdown's: c stays queued.
func (s *Service) apply(ctx context.Context, c db.DnsChange) error {
	var h map[string][]string
	_ = json.Unmarshal([]byte(c.Trace), &h)
	ctx = telemetry.ExtractHeaders(ctx, h)
	log := s.log.With(slog.Int64("change", c.ID), slog.String("kind", c.Kind), slog.String("name", c.Name), slog.String("instance", c.Instance))
	q := db.New(s.rt.DB.R)

	if c.Kind == kindActivate {
		applied, err := lastApplied(ctx, q, c.Instance)
		if err != nil {
			return err
		}
		newer, err := q.NewerActivations(ctx, db.NewerActivationsParams{Instance: c.Instance, Epoch: c.Epoch})
		if err != nil {
			return err
		}
		switch {
		case c.Epoch <= applied:
			log.Warn("stale activation dropped: a newer epoch was applied meanwhile", slog.Int64("epoch", c.Epoch), slog.Int64("applied", applied))
			return s.drop(ctx, c)
		case newer > 0:
			log.Info("activation superseded by a newer one queued for the instance; skipping to it", slog.Int64("epoch", c.Epoch))
			return s.drop(ctx, c)
		}
	}

	ttl, err := s.ttlFor(ctx, q, c)
	if err != nil {
		return err
	}
	// The old values, read once before the first Set.
	var old string
	if c.Old.Valid {
		old = c.Old.String
	} else {
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return s.failed(ctx, c, false, 0, fmt.Errorf("read %s %s before changing it: %w", c.Name, c.Type, err))
		}
		old = strings.Join(provider.Values(cur), ",")
		if err := s.update(ctx, func(q *db.Queries) error {
			return q.SetChangeOld(ctx, db.SetChangeOldParams{Old: sql.NullString{String: old, Valid: true}, ID: c.ID})
		}); err != nil {
			return err
		}
		c.Old = sql.NullString{String: old, Valid: true}
	}
	values := []string{c.Value}
	if c.Kind == kindTTL {
		// A TTL change keeps whatever the name holds now.
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if errors.Is(err, provider.ErrNotFound) {
			log.Info("TTL change skipped: the name has no record yet")
			return s.drop(ctx, c)
		}
		if err != nil {
			return s.failed(ctx, c, false, 0, fmt.Errorf("read %s %s to change its TTL: %w", c.Name, c.Type, err))
		}
		values = provider.Values(cur)
	}
	rs := make([]provider.Record, len(values))
	for i, v := range values {
		rs[i] = provider.Record{Name: c.Name, Type: c.Type, Value: v, TTL: ttl}
	}

	if err := s.p.Set(ctx, rs); err != nil {
		return s.failed(ctx, c, c.Applied != 0, ttl, err)
	}
	if c.Applied == 0 {
		if err := s.update(ctx, func(q *db.Queries) error { return q.MarkChangeApplied(ctx, c.ID) }); err != nil {
			return err
		}
		c.Applied = 1
	}
	if s.afterSet != nil {
		if err := s.afterSet(); err != nil {
			return err
		}
	}
	took, err := provider.Verify(ctx, s.p.Authoritative(), c.Name, c.Type, values[0], s.cfg.verifyOptions())
	if err != nil {
		return s.failed(ctx, c, true, ttl, err)
	}
	return s.succeeded(ctx, c, log, old, strings.Join(values, ","), ttl, took)
}

// ttlFor returns the TTL change c sets: its own when it names one (a set
// with a TTL), else the instance's TTL, lowered while a planned failover
// of the instance is under way.
func (s *Service) ttlFor(ctx context.Context, q *db.Queries, c db.DnsChange) (uint32, error) {
	if c.Ttl > 0 {
		return uint32(c.Ttl), nil
	}
	ttl := uint32(DefaultTTL)
	if ic, ok := s.cfg.Instances[c.Instance]; ok {
		ttl = ic.TTL
	}
	l, err := q.GetLowered(ctx, c.Instance)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, err
	default:
		ttl = min(ttl, uint32(l.Ttl))
	}
	return ttl, nil
}

// succeeded records a verified change: the row goes, the history, epoch
// and DNSRecordUpdated come, in one transaction.
func (s *Service) succeeded(ctx context.Context, c db.DnsChange, log *slog.Logger, old, new string, ttl uint32, took time.Duration) error {
	verified := ceilMillis(took)
	err := s.record(ctx, c, func(tx *store.Tx, q *db.Queries) error {
		if err := s.addHistory(ctx, q, c, old, new, ttl, int64(verified)); err != nil {
			return err
		}
		_, err := tx.Emit(ctx, &events.DNSRecordUpdated{
			Name: c.Name, Type: c.Type, Old: old, New: new, TTL: ttl, Provider: s.p.Name(),
			Instance: c.Instance, Epoch: uint64(c.Epoch), VerifiedAfter: verified, UpdatedAt: time.Now().UTC(),
		})
		return err
	})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "dns record updated and verified", slog.String("old", old), slog.String("new", new), slog.Uint64("ttl", uint64(ttl)),
		slog.Int64("epoch", c.Epoch), slog.Duration("verified_after", took))
	return nil
}

// failed retries c later when err may pass, or ends it with
// DNSUpdateFailed. applied says whether the provider holds the change (it
// was set, but not verified): then the history and epoch record it too,
// marked unverified, since the name does point at the new value.
func (s *Service) failed(ctx context.Context, c db.DnsChange, applied bool, ttl uint32, err error) error {
	if ctx.Err() != nil {
		// Shutting down: the change stays queued for the next start.
		return ctx.Err()
	}
	attempts := int(c.Attempts) + 1
	log := s.log.With(slog.Int64("change", c.ID), slog.String("name", c.Name), slog.String("value", c.Value),
		slog.Int("attempt", attempts), slog.String("error", err.Error()))
	if provider.IsTemporary(err) && attempts < s.cfg.Retry.Attempts {
		wait := s.backoff(attempts)
		log.WarnContext(ctx, "dns change failed; will retry", slog.Duration("in", wait))
		return s.update(ctx, func(q *db.Queries) error {
			return q.RetryChange(ctx, db.RetryChangeParams{Attempts: int64(attempts), NextAt: time.Now().Add(wait).UnixMilli(), LastError: err.Error(), ID: c.ID})
		})
	}
	log.ErrorContext(ctx, "dns change failed", slog.Bool("applied_unverified", applied))
	if provider.IsTemporary(err) {
		err = fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
	}
	return s.record(ctx, c, func(tx *store.Tx, q *db.Queries) error {
		if applied {
			if err := s.addHistory(ctx, q, c, c.Old.String, c.Value, ttl, -1); err != nil {
				return err
			}
		}
		return emitFailed(ctx, tx, failure{name: c.Name, typ: c.Type, value: c.Value, instance: c.Instance, epoch: uint64(c.Epoch),
			provider: s.p.Name(), attempts: attempts}, err)
	})
}

// addHistory appends a history row and, for an activation, moves the
// instance's epoch.
func (s *Service) addHistory(ctx context.Context, q *db.Queries, c db.DnsChange, old, new string, ttl uint32, verifiedMs int64) error {
	if new == "" {
		new = old // a TTL change keeps the values
	}
	if _, err := q.AddHistory(ctx, db.AddHistoryParams{Name: c.Name, Type: c.Type, Old: old, New: new, Ttl: int64(ttl),
		Provider: s.p.Name(), Epoch: c.Epoch, At: time.Now().UnixMilli(), VerifiedAfterMs: verifiedMs, Kind: c.Kind, Instance: c.Instance}); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if c.Kind == kindActivate {
		if err := q.SetEpoch(ctx, db.SetEpochParams{Instance: c.Instance, Epoch: c.Epoch, Name: c.Name, Address: c.Value, AppliedAt: time.Now().UnixMilli()}); err != nil {
			return fmt.Errorf("epoch: %w", err)
		}
	}
	return nil
}

// record deletes c's row and runs fn in the same transaction; when the row
// is already gone the outcome was recorded before and fn does not run. It
// finishes even when shutdown has begun, since the change was made.
func (s *Service) record(ctx context.Context, c db.DnsChange, fn func(tx *store.Tx, q *db.Queries) error) error {
	ctx = context.WithoutCancel(ctx)
	return s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		n, err := q.DeleteChange(ctx, c.ID)
		if err != nil || n == 0 {
			return err
		}
		return fn(tx, q)
	})
}

// drop removes c without an outcome (stale or superseded).
func (s *Service) drop(ctx context.Context, c db.DnsChange) error {
	return s.record(ctx, c, func(*store.Tx, *db.Queries) error { return nil })
}

// update runs fn in a write transaction of its own.
func (s *Service) update(ctx context.Context, fn func(q *db.Queries) error) error {
	return s.rt.DB.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error { return fn(db.New(tx)) })
}

// backoff returns the wait before attempt n+1.
func (s *Service) backoff(n int) time.Duration {
	d := s.cfg.Retry.FirstBackoff
	for i := 1; i < n && d < s.cfg.Retry.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.Retry.MaxBackoff)
}

// ceilMillis rounds d up to whole milliseconds: a change verified within a
// fraction of a millisecond (the embedded server on loopback) reports 1,
// not 0, which the event would omit as "unknown".
func ceilMillis(d time.Duration) events.Millis {
	return events.Millis((d + time.Millisecond - 1) / time.Millisecond)
}
