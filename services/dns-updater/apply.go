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

// A change is made by a job of the runtime's work queue (kind "change",
// keyed by the DNS name, so that the changes of one name are made one at a
// time and in order), owned by the service's leader: every host holds the
// job of every change (its handler queued it), and only the leader runs
// it, outside any transaction. A new leader runs what is still queued.
//
// What the job does depends on the provider:
//
//   - embedded: every host applied the change to its own zone while it
//     applied the event; the job verifies that every host whose
//     dns-updater runs answers it (verify.go), then emits DNSRecordUpdated.
//   - rfc2136, infoblox: the job sends the change, verifies it at the
//     zone's authoritative servers, and emits DNSRecordUpdated.
//
// Either way the outcome is the leader's decision, emitted in the
// transaction that removes the job from the leader's queue: its id carries
// the leader's epoch and it names the change (outcome.go), so every host
// applies it once, even when a deposed leader and its successor both
// decide. The replicated tables change only when the outcome is applied,
// never here: they must not depend on which host ran the job.
//
// Exactly once at the provider, as far as it can be: the provider's Set
// replaces the record set, so setting it again (on a retry, or by a new
// leader) gives the same records. The values the name had are read once,
// before the first Set, and committed to this host's dns_jobs row before
// that Set: a retry on this host reports them rather than the new value
// the name may already hold. A new leader that takes over a change its
// predecessor had sent reads them again (and may report the new value as
// the old one).
//
// Retries: a failure that may pass (an unreachable server, SERVFAIL, an
// answer not yet verified, a host whose server does not answer yet)
// returns the error to the queue, which runs the job again after
// dns.retry's backoff; at dns.retry.attempts (the job's Attempt), or at
// once for any other failure, the job ends with DNSUpdateFailed and its
// reason.

// changeJob is a change job's payload: what to set, as the handler decided
// it.
type changeJob struct {
	// Kind is activate, set or ttl.
	Kind string `json:"kind"`
	// Instance is the instance whose name it is.
	Instance string `json:"instance,omitempty"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	// Value is the address to set; for a TTL change the values the
	// embedded zone holds, or empty (the values the provider holds when
	// the change is sent).
	Value string `json:"value,omitempty"`
	// TTL is the TTL to set, resolved when the change was asked for; 0 (a
	// change queued by an older version, or a set that names none) is
	// resolved when the change is made.
	TTL uint32 `json:"ttl,omitempty"`
	// Epoch is the activation's fencing epoch; 0 for set and ttl.
	Epoch int64 `json:"epoch,omitempty"`
	// RequestID is the id of the dns-updater.set command that asked, which
	// its answer carries.
	RequestID string `json:"request_id,omitempty"`
	// After is, for a set, the newest change of the name in the history
	// when the set was accepted; -1 for a set queued by an older version
	// (not checked).
	After int64 `json:"after,omitempty"`
}

// result is what a change job found, for its outcome.
type result struct {
	epoch    uint64 // the leader's, when the job started
	old      string // the values before
	value    string // the values set
	ttl      uint32
	applied  bool // an external provider holds the change (set, maybe not verified)
	external bool
}

// applyChange is the worker of change jobs: it makes change c (or checks
// that every host made it) and returns the outcome to record. An error
// returned runs the job again after a backoff: a failure that may pass,
// the database's, or the shutdown's (the job is then given back untried).
func (s *Service) applyChange(ctx context.Context, j service.Job, c *changeJob) (service.Finish, error) {
	log := s.log.With(slog.String("job", j.ID), slog.String("kind", c.Kind), slog.String("name", c.Name),
		slog.String("instance", c.Instance), slog.Int("attempt", j.Attempt))
	epoch, leading := s.leading()
	if !leading {
		return nil, errors.New("this host no longer leads dns-updater: the new leader makes the change")
	}
	r := result{epoch: epoch, value: c.Value, ttl: c.TTL}
	if s.p == nil {
		// Queued while a zone was configured; the config has none now.
		return s.failedFinish(log, j, c, r, 0, errNoZone), nil
	}
	q := db.New(s.db.R)
	if c.Kind == kindSet {
		// A set by hand is not pending on every host: the leader that
		// accepted it holds it alone (handleDNSSet). One that waited in
		// the queue of a leader that stopped before making it is not made
		// when that host leads again, much later.
		if waited := s.now().Sub(j.Enqueued); j.Attempt == 1 && waited > setExpiry {
			return s.failedFinish(log, j, c, r, 0, fmt.Errorf("%w: the set waited %s for the leader that accepted it to make it (it stopped meanwhile); ask again if it is still wanted",
				errExpired, waited.Round(time.Second))), nil
		}
		if s.emb != nil {
			return s.applySet(ctx, log, q, j, c, r)
		}
	} else {
		p, err := q.GetPending(ctx, j.ID)
		if errors.Is(err, sql.ErrNoRows) {
			// Resolved or superseded: every host forgets it.
			log.InfoContext(ctx, "change no longer pending; nothing to do")
			return forgetFinish(j), nil
		}
		if err != nil {
			return nil, fmt.Errorf("pending %s: %w", j.ID, err)
		}
		r.value, r.ttl = p.Value, uint32(p.Ttl)
		if s.emb != nil && p.Zoned == 1 {
			return s.verifyZone(ctx, log, q, j, c, p, r)
		}
		if s.emb != nil {
			return s.failedFinish(log, j, c, r, j.Attempt, fmt.Errorf("%w: the change was not applied to the embedded zone at start (see the log)", provider.ErrInvalidValue)), nil
		}
	}
	return s.send(ctx, log, q, j, c, r)
}

// send makes change c at an external provider and verifies it at the
// zone's authoritative servers.
func (s *Service) send(ctx context.Context, log *slog.Logger, q *db.Queries, j service.Job, c *changeJob, r result) (service.Finish, error) {
	r.external = true
	st, err := s.jobState(ctx, q, j, c)
	if err != nil {
		return nil, err
	}
	if r.ttl == 0 {
		if r.ttl, err = ttlFor(ctx, q, s.cfg, c); err != nil {
			return nil, err
		}
	}
	// The old values, read once before the first Set.
	r.old = st.Old.String
	if !st.Old.Valid {
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return s.failed(ctx, log, j, c, r, fmt.Errorf("read %s %s before changing it: %w", c.Name, c.Type, err))
		}
		r.old = strings.Join(provider.Values(cur), ",")
		if err := s.update(ctx, func(q *db.Queries) error {
			return q.SetJobOld(ctx, db.SetJobOldParams{Old: sql.NullString{String: r.old, Valid: true}, ID: j.ID})
		}); err != nil {
			return nil, fmt.Errorf("record the values of %s before changing them: %w", c.Name, err)
		}
	}
	r.applied = st.Applied != 0
	values := []string{c.Value}
	if c.Kind == kindTTL {
		// A TTL change keeps whatever the name holds now.
		cur, err := s.p.Get(ctx, c.Name, c.Type)
		if errors.Is(err, provider.ErrNotFound) {
			// Nothing to change; the change stays pending on the other
			// hosts until an outcome of a later change of the name is
			// applied (or a new leader finds the same).
			log.InfoContext(ctx, "TTL change skipped: the name has no record yet")
			return s.doneFinish(j), nil
		}
		if err != nil {
			return s.failed(ctx, log, j, c, r, fmt.Errorf("read %s %s to change its TTL: %w", c.Name, c.Type, err))
		}
		values = provider.Values(cur)
	}
	r.value = strings.Join(values, ",")
	rs := make([]provider.Record, len(values))
	for i, v := range values {
		rs[i] = provider.Record{Name: c.Name, Type: c.Type, Value: v, TTL: r.ttl}
	}
	if err := s.p.Set(ctx, rs); err != nil {
		return s.failed(ctx, log, j, c, r, err)
	}
	if !r.applied {
		if err := s.update(ctx, func(q *db.Queries) error { return q.MarkJobApplied(ctx, j.ID) }); err != nil {
			return nil, fmt.Errorf("record that %s was set: %w", c.Name, err)
		}
		r.applied = true
	}
	if s.afterSet != nil {
		if err := s.afterSet(ctx); err != nil {
			return nil, err
		}
	}
	took, err := provider.Verify(ctx, s.p.Authoritative(), c.Name, c.Type, values[0], s.cfg.verifyOptions())
	if err != nil {
		return s.failed(ctx, log, j, c, r, err)
	}
	return s.succeeded(log, j, c, r, took), nil
}

// verifyZone waits until every host's embedded server answers change p,
// which every host applied to its own zone.
func (s *Service) verifyZone(ctx context.Context, log *slog.Logger, q *db.Queries, j service.Job, c *changeJob, p db.DnsPending, r result) (service.Finish, error) {
	r.old = p.Old.String
	if s.afterSet != nil {
		if err := s.afterSet(ctx); err != nil {
			return nil, err
		}
	}
	took, err := s.verifyHosts(ctx, q, p)
	if err != nil {
		return s.failed(ctx, log, j, c, r, err)
	}
	return s.succeeded(log, j, c, r, took), nil
}

// applySet makes a set by hand of the embedded zone. The catalog has no
// event that would carry the set to every host before it is verified (a
// command is consumed by the leader alone), so the set travels in its
// DNSRecordUpdated, which every host applies to its zone (outcome.go).
// Before emitting it the leader serves the set from an overlay of its own
// server (embedded.Server.Overlay: in memory, not in the replicated
// tables) and verifies that its server answers it; the other hosts answer
// it once they have applied the event. It is refused when the zone would
// refuse it, and when a change of the name (an activation) was applied
// after the set was accepted: the set would revert it.
func (s *Service) applySet(ctx context.Context, log *slog.Logger, q *db.Queries, j service.Job, c *changeJob, r result) (service.Finish, error) {
	var err error
	if r.ttl, err = ttlFor(ctx, q, s.cfg, c); err != nil {
		return nil, err
	}
	var newer []db.DnsHistory
	if c.After >= 0 {
		if newer, err = q.HistoryAfter(ctx, db.HistoryAfterParams{Name: c.Name, ID: c.After}); err != nil {
			return nil, fmt.Errorf("history of %s: %w", c.Name, err)
		}
	}
	if len(newer) > 0 {
		n := newer[len(newer)-1]
		return s.failedFinish(log, j, c, r, j.Attempt, fmt.Errorf("%w: %s changed after the set was asked for (%s to %s, epoch %d); the set is not applied over it: ask again if it is still wanted",
			errSuperseded, c.Name, n.Kind, n.New, n.Epoch)), nil
	}
	cur, err := q.ListRRset(ctx, db.ListRRsetParams{Zone: s.emb.Zone(), Name: c.Name, Type: c.Type})
	if err != nil {
		return nil, fmt.Errorf("records of %s: %w", c.Name, err)
	}
	var old []string
	for _, rec := range cur {
		old = append(old, rec.Value)
	}
	r.old = strings.Join(old, ",")
	rs := []provider.Record{{Name: c.Name, Type: c.Type, Value: c.Value, TTL: r.ttl}}
	if err := s.emb.Overlay(ctx, rs); err != nil {
		return s.failedFinish(log, j, c, r, j.Attempt, err), nil
	}
	if s.afterSet != nil {
		if err := s.afterSet(ctx); err != nil {
			s.dropOverlay(c)
			return nil, err
		}
	}
	took, err := provider.Verify(ctx, []string{dialable(s.emb.Addr())}, c.Name, c.Type, c.Value, s.cfg.verifyOptions())
	if err != nil {
		s.dropOverlay(c)
		return s.failed(ctx, log, j, c, r, err)
	}
	// The overlay stays until the DNSRecordUpdated is applied here, which
	// changes the record set. Should it never be (this host deposed
	// meanwhile, its decision dropped), it goes after overlayBound.
	finish := s.succeeded(log, j, c, r, took)
	return func(ctx context.Context, tx *store.Tx) error {
		if e, ok := s.leading(); !ok || e != r.epoch {
			s.dropOverlay(c)
			return errors.New("this host no longer leads dns-updater: the new leader makes the set")
		}
		tx.AfterCommit(func() { s.expireOverlay(rs) })
		return finish(ctx, tx)
	}, nil
}

// overlayBound is how long a set's overlay may outlive its decision.
const overlayBound = time.Minute

// expireOverlay drops the overlay rs after overlayBound, unless a change
// of its record set replaced it before.
func (s *Service) expireOverlay(rs []provider.Record) {
	if s.rt == nil {
		return
	}
	s.rt.Go(func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(overlayBound):
		}
		if err := s.emb.DropOverlayOf(ctx, rs); err != nil {
			s.log.Warn("could not drop a set's overlay", slog.String("name", rs[0].Name), slog.String("error", err.Error()))
		}
		return nil
	})
}

// dropOverlay serves the zone's own record set of c's name again.
func (s *Service) dropOverlay(c *changeJob) {
	if err := s.emb.DropOverlay(context.Background(), c.Name, c.Type); err != nil {
		s.log.Warn("could not drop a set's overlay; the next change of the name does", slog.String("name", c.Name), slog.String("error", err.Error()))
	}
}

// errSuperseded refuses a set overtaken by a later change of its name;
// errExpired one that waited longer than setExpiry to be made.
var (
	errSuperseded = errors.New("superseded")
	errExpired    = errors.New("expired")
)

// setExpiry bounds how long a set by hand may wait in the queue of the
// leader that accepted it.
const setExpiry = 10 * time.Minute

// jobState returns the job's dns_jobs row. The handler writes it with the
// job; a job without one (a database edited by hand) gets one, so that its
// old value can be kept.
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
// of the instance is under way. A handler calls it with its transaction's
// queries, so the TTL follows from the replicated state.
func ttlFor(ctx context.Context, q *db.Queries, cfg Config, c *changeJob) (uint32, error) {
	if c.TTL > 0 {
		return c.TTL, nil
	}
	ttl := uint32(DefaultTTL)
	if ic, ok := cfg.Instances[c.Instance]; ok {
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

// succeeded is the outcome of a change verified (took: how long):
// DNSRecordUpdated, the leader's decision, with the job's removal from
// this host's queue.
func (s *Service) succeeded(log *slog.Logger, j service.Job, c *changeJob, r result, took time.Duration) service.Finish {
	verified := ceilMillis(took)
	return func(ctx context.Context, tx *store.Tx) error {
		if err := db.New(tx).MarkJobDone(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		ev := &events.DNSRecordUpdated{
			Name: c.Name, Type: c.Type, Old: r.old, New: r.value, TTL: r.ttl, Provider: s.p.Name(),
			Instance: c.Instance, Epoch: uint64(c.Epoch), VerifiedAfter: verified, UpdatedAt: s.now().UTC(), RequestID: c.RequestID,
		}
		if err := s.decide(ctx, tx, r.epoch, j.ID, ev, nil); err != nil {
			return fmt.Errorf("emit DNSRecordUpdated: %w", err)
		}
		tx.AfterCommit(func() {
			log.InfoContext(ctx, "dns record updated", slog.String("old", r.old), slog.String("new", r.value), slog.Uint64("ttl", uint64(r.ttl)),
				slog.Int64("epoch", c.Epoch), slog.Duration("verified_after", took))
		})
		return nil
	}
}

// failed runs the job again later when err may pass and attempts remain,
// or ends it with DNSUpdateFailed.
func (s *Service) failed(ctx context.Context, log *slog.Logger, j service.Job, c *changeJob, r result, err error) (service.Finish, error) {
	if ctx.Err() != nil {
		// Shutting down, or leadership lost: the job is given back, and
		// runs again on whoever leads.
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
	return s.failedFinish(log, j, c, r, j.Attempt, err), nil
}

// failedFinish is the outcome of a change that failed for good:
// DNSUpdateFailed, the leader's decision. When an external provider holds
// the change (set, but not verified) the event says so in a header, with
// the values the name had, so that every host records it in the history.
func (s *Service) failedFinish(log *slog.Logger, j service.Job, c *changeJob, r result, attempts int, cause error) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		if err := db.New(tx).MarkJobDone(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		f := failure{name: c.Name, typ: c.Type, value: c.Value, instance: c.Instance, epoch: uint64(c.Epoch),
			attempts: attempts, requestID: c.RequestID, at: s.now()}
		if s.p != nil {
			f.provider = s.p.Name()
		}
		var applied *result
		if r.external && r.applied {
			applied = &r
		}
		if err := s.decide(ctx, tx, r.epoch, j.ID, failedEvent(f, cause), applied); err != nil {
			return fmt.Errorf("emit DNSUpdateFailed: %w", err)
		}
		tx.AfterCommit(func() {
			log.ErrorContext(ctx, "dns change failed", slog.String("value", c.Value), slog.Bool("applied_unverified", applied != nil),
				slog.Int("attempts", attempts), slog.String("error", cause.Error()))
		})
		return nil
	}
}

// forgetFinish is the outcome of a job whose change is no longer pending
// (resolved or superseded meanwhile): the job and its row go.
func forgetFinish(j service.Job) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		if _, err := db.New(tx).DeleteJob(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		return nil
	}
}

// doneFinish is the outcome of a job that changes nothing (a TTL change of
// a name with no record at the provider): the job leaves this host's
// queue, and its row says it is done until the change is forgotten.
func (s *Service) doneFinish(j service.Job) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		if err := db.New(tx).MarkJobSkipped(ctx, j.ID); err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		return nil
	}
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
