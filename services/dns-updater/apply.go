package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// A change is applied by a job of the runtime's work queue (kind "change",
// keyed by the DNS name, so that the changes of one name are applied one at
// a time and in order), outside any transaction: a DNS update and its
// verification can take seconds (or a timeout per try), and the embedded
// provider writes its zone through the store in transactions of its own.
//
// Why it is exactly once: the job was enqueued in the transaction that
// marked its event handled; the provider's Set replaces the record set, so
// setting it again on a later attempt gives the same records; and the
// outcome (the history row, the epoch and the outcome event in the outbox)
// commits in the transaction that removes the job, at most once. The
// values the name had are read once, before the first Set, and committed
// to the job's dns_jobs row before that Set: an attempt after a crash
// finds them there instead of reading the name again (which may already
// hold the new value), so the outcome reports the true old value. A crash
// between the read and its commit lost nothing, since no Set had been
// sent: the next attempt reads the same values again.
//
// Retries: a failure that may pass (an unreachable server, SERVFAIL, an
// answer not yet verified) returns the error to the queue, which runs the
// job again after dns.retry's backoff; at dns.retry.attempts (the job's
// Attempt), or at once for any other failure, the job ends with
// DNSUpdateFailed and its reason.

// changeJob is a change job's payload: what to set, as the handler decided
// it.
type changeJob struct {
	// Kind is activate, set or ttl.
	Kind string `json:"kind"`
	// Instance is the instance whose name it is; empty for a set of a name
	// that no instance declares (refused before it is queued).
	Instance string `json:"instance,omitempty"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	// Value is the address to set; empty for a TTL change, which keeps the
	// values the name has when it is applied.
	Value string `json:"value,omitempty"`
	// TTL is the TTL a set asked for; 0 means the instance's, resolved when
	// the change is applied (lowered during a planned failover).
	TTL uint32 `json:"ttl,omitempty"`
	// Epoch is the activation's fencing epoch; 0 for set and ttl.
	Epoch int64 `json:"epoch,omitempty"`
	// RequestID is the id of the dns-updater.set command that asked, which
	// its answer carries.
	RequestID string `json:"request_id,omitempty"`
}

// applyChange is the worker of change jobs: it makes change c at the
// provider, verifies it, and returns the outcome to record. An error
// returned runs the job again after a backoff: a failure that may pass, the
// database's, or the shutdown's (the job is then given back untried).
func (s *Service) applyChange(ctx context.Context, j service.Job, c *changeJob) (service.Finish, error) {
	log := s.log.With(slog.String("job", j.ID), slog.String("kind", c.Kind), slog.String("name", c.Name),
		slog.String("instance", c.Instance), slog.Int("attempt", j.Attempt))
	if s.p == nil {
		// Queued while a zone was configured; the config has none now.
		return s.failedFinish(log, j, c, "", false, 0, 0, errNoZone), nil
	}
	q := db.New(s.db.R)
	st, err := s.jobState(ctx, q, j, c)
	if err != nil {
		return nil, err
	}

	if c.Kind == kindActivate {
		applied, err := lastApplied(ctx, q, c.Instance)
		if err != nil {
			return nil, fmt.Errorf("epoch of %s: %w", c.Instance, err)
		}
		newer, err := q.NewerActivations(ctx, db.NewerActivationsParams{Instance: c.Instance, Epoch: c.Epoch})
		if err != nil {
			return nil, fmt.Errorf("queued activations of %s: %w", c.Instance, err)
		}
		switch {
		case c.Epoch <= applied:
			log.WarnContext(ctx, "stale activation dropped: a newer epoch was applied meanwhile", slog.Int64("epoch", c.Epoch), slog.Int64("applied", applied))
			return dropped(j), nil
		case newer > 0:
			log.InfoContext(ctx, "activation superseded by a newer one queued for the instance; skipping to it", slog.Int64("epoch", c.Epoch))
			return dropped(j), nil
		}
	}

	ttl, err := s.ttlFor(ctx, q, c)
	if err != nil {
		return nil, err
	}
	// The old values, read once before the first Set.
	old := st.Old.String
	if !st.Old.Valid {
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return s.failed(ctx, log, j, c, "", false, 0, fmt.Errorf("read %s %s before changing it: %w", c.Name, c.Type, err))
		}
		old = strings.Join(provider.Values(cur), ",")
		if err := s.update(ctx, func(q *db.Queries) error {
			return q.SetJobOld(ctx, db.SetJobOldParams{Old: sql.NullString{String: old, Valid: true}, ID: j.ID})
		}); err != nil {
			return nil, fmt.Errorf("record the values of %s before changing them: %w", c.Name, err)
		}
	}
	values := []string{c.Value}
	if c.Kind == kindTTL {
		// A TTL change keeps whatever the name holds now.
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if errors.Is(err, provider.ErrNotFound) {
			log.InfoContext(ctx, "TTL change skipped: the name has no record yet")
			return dropped(j), nil
		}
		if err != nil {
			return s.failed(ctx, log, j, c, old, false, 0, fmt.Errorf("read %s %s to change its TTL: %w", c.Name, c.Type, err))
		}
		values = provider.Values(cur)
	}
	rs := make([]provider.Record, len(values))
	for i, v := range values {
		rs[i] = provider.Record{Name: c.Name, Type: c.Type, Value: v, TTL: ttl}
	}

	if err := s.p.Set(ctx, rs); err != nil {
		return s.failed(ctx, log, j, c, old, st.Applied != 0, ttl, err)
	}
	if st.Applied == 0 {
		if err := s.update(ctx, func(q *db.Queries) error { return q.MarkJobApplied(ctx, j.ID) }); err != nil {
			return nil, fmt.Errorf("record that %s was set: %w", c.Name, err)
		}
	}
	if s.afterSet != nil {
		if err := s.afterSet(); err != nil {
			return nil, err
		}
	}
	took, err := provider.Verify(ctx, s.p.Authoritative(), c.Name, c.Type, values[0], s.cfg.verifyOptions())
	if err != nil {
		return s.failed(ctx, log, j, c, old, true, ttl, err)
	}
	return s.succeeded(log, j, c, old, strings.Join(values, ","), ttl, took), nil
}

// jobState returns the job's dns_jobs row. The handler writes it with the
// job; a job without one (which only a database edited by hand could
// hold) gets one, so that its old value can be kept.
func (s *Service) jobState(ctx context.Context, q *db.Queries, j service.Job, c *changeJob) (db.DnsJob, error) {
	st, err := q.GetJob(ctx, j.ID)
	if errors.Is(err, sql.ErrNoRows) {
		st = db.DnsJob{ID: j.ID, Kind: c.Kind, Instance: c.Instance, Name: c.Name, Epoch: c.Epoch, CreatedAt: j.Enqueued.UnixMilli()}
		err = s.update(ctx, func(q *db.Queries) error {
			return q.AddJob(ctx, db.AddJobParams{ID: st.ID, Kind: st.Kind, Instance: st.Instance, Name: st.Name, Epoch: st.Epoch, CreatedAt: st.CreatedAt})
		})
	}
	if err != nil {
		return st, fmt.Errorf("state of job %s: %w", j.ID, err)
	}
	return st, nil
}

// ttlFor returns the TTL change c sets: its own when it names one (a set
// with a TTL), else the instance's TTL, lowered while a planned failover
// of the instance is under way.
func (s *Service) ttlFor(ctx context.Context, q *db.Queries, c *changeJob) (uint32, error) {
	if c.TTL > 0 {
		return c.TTL, nil
	}
	ttl := uint32(DefaultTTL)
	if ic, ok := s.cfg.Instances[c.Instance]; ok {
		ttl = ic.TTL
	}
	l, err := q.GetLowered(ctx, c.Instance)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, fmt.Errorf("lowered TTL of %s: %w", c.Instance, err)
	default:
		ttl = min(ttl, uint32(l.Ttl))
	}
	return ttl, nil
}

// succeeded is the outcome of a verified change: the job's row goes, the
// history, epoch and DNSRecordUpdated come, with the job's removal.
func (s *Service) succeeded(log *slog.Logger, j service.Job, c *changeJob, old, value string, ttl uint32, took time.Duration) service.Finish {
	verified := ceilMillis(took)
	return func(ctx context.Context, tx *store.Tx) error {
		q := db.New(tx)
		if _, err := q.DeleteJob(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		if err := s.addHistory(ctx, q, c, old, value, ttl, int64(verified)); err != nil {
			return err
		}
		if _, err := tx.Emit(ctx, &events.DNSRecordUpdated{
			Name: c.Name, Type: c.Type, Old: old, New: value, TTL: ttl, Provider: s.p.Name(),
			Instance: c.Instance, Epoch: uint64(c.Epoch), VerifiedAfter: verified, UpdatedAt: s.now().UTC(), RequestID: c.RequestID,
		}); err != nil {
			return fmt.Errorf("emit DNSRecordUpdated: %w", err)
		}
		tx.AfterCommit(func() {
			log.InfoContext(ctx, "dns record updated and verified", slog.String("old", old), slog.String("new", value), slog.Uint64("ttl", uint64(ttl)),
				slog.Int64("epoch", c.Epoch), slog.Duration("verified_after", took))
		})
		return nil
	}
}

// failed runs the job again later when err may pass and attempts remain,
// or ends it with DNSUpdateFailed. applied says whether the provider holds
// the change (it was set, but not verified): then the history and epoch
// record it too, marked unverified, since the name does point at the new
// value.
func (s *Service) failed(ctx context.Context, log *slog.Logger, j service.Job, c *changeJob, old string, applied bool, ttl uint32, err error) (service.Finish, error) {
	if ctx.Err() != nil {
		// Shutting down: the job is given back, and runs at the next start.
		return nil, fmt.Errorf("%w (stopped: %w)", err, context.Cause(ctx))
	}
	if provider.IsTemporary(err) && j.Attempt < s.cfg.Retry.Attempts {
		log.WarnContext(ctx, "dns change failed; will retry", slog.String("value", c.Value), slog.String("error", err.Error()),
			slog.Duration("in", s.retryIn(j.Attempt)))
		return nil, err
	}
	if provider.IsTemporary(err) {
		err = fmt.Errorf("%w (gave up after %d attempts)", err, j.Attempt)
	}
	return s.failedFinish(log, j, c, old, applied, ttl, j.Attempt, err), nil
}

// failedFinish is the outcome of a change that failed for good.
func (s *Service) failedFinish(log *slog.Logger, j service.Job, c *changeJob, old string, applied bool, ttl uint32, attempts int, cause error) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		q := db.New(tx)
		if _, err := q.DeleteJob(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		if applied {
			if err := s.addHistory(ctx, q, c, old, c.Value, ttl, -1); err != nil {
				return err
			}
		}
		f := failure{name: c.Name, typ: c.Type, value: c.Value, instance: c.Instance, epoch: uint64(c.Epoch),
			attempts: attempts, requestID: c.RequestID, at: s.now()}
		if s.p != nil {
			f.provider = s.p.Name()
		}
		if err := s.emitFailed(ctx, tx, f, cause); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			log.ErrorContext(ctx, "dns change failed", slog.String("value", c.Value), slog.Bool("applied_unverified", applied),
				slog.Int("attempts", attempts), slog.String("error", cause.Error()))
		})
		return nil
	}
}

// dropped is the outcome of a job that changes nothing (a stale or
// superseded activation, a TTL change of a name with no record): the job
// and its row go.
func dropped(j service.Job) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		if _, err := db.New(tx).DeleteJob(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		return nil
	}
}

// addHistory appends a history row and, for an activation, moves the
// instance's epoch.
func (s *Service) addHistory(ctx context.Context, q *db.Queries, c *changeJob, old, value string, ttl uint32, verifiedMs int64) error {
	if value == "" {
		value = old // a TTL change keeps the values
	}
	at := s.now().UnixMilli()
	if _, err := q.AddHistory(ctx, db.AddHistoryParams{Name: c.Name, Type: c.Type, Old: old, New: value, Ttl: int64(ttl),
		Provider: s.p.Name(), Epoch: c.Epoch, At: at, VerifiedAfterMs: verifiedMs, Kind: c.Kind, Instance: c.Instance}); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if c.Kind == kindActivate {
		if err := q.SetEpoch(ctx, db.SetEpochParams{Instance: c.Instance, Epoch: c.Epoch, Name: c.Name, Address: c.Value, AppliedAt: at}); err != nil {
			return fmt.Errorf("epoch: %w", err)
		}
	}
	return nil
}

// update records a job's progress in a write transaction of its own. It
// finishes even when shutdown has begun, since what it records happened.
func (s *Service) update(ctx context.Context, fn func(q *db.Queries) error) error {
	return s.db.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error { return fn(db.New(tx)) })
}

// backoff returns the wait before attempt n+1 (dns.retry).
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
