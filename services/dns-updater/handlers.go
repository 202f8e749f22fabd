package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// Kinds of change.
const (
	kindActivate = "activate" // InstanceActivated: the instance's name → its new address
	kindSet      = "set"      // dns-updater.set: a name → an address, by hand
	kindTTL      = "ttl"      // lower or restore the TTL, keeping the values
)

// workChange is the kind of the work queue's jobs that apply a change; a
// job's key is the DNS name, so that the changes of one name are applied
// one at a time, in the order they were asked for.
const workChange = "change"

// errNoZone refuses work when the config names no zone.
var errNoZone = errors.New("dns-updater has no zone configured: set dns.zone (and the instances' names, instances.<name>.dns) in lifeboat.yaml")

// Every host applies every event (DESIGN §1): a handler validates its
// event, checks it against the replicated state (epochs, ownership,
// what is pending), records the change it asks for in dns_pending and, in
// the transaction that marks the event handled, enqueues one job for it
// (its id derived from the event's, so every host holds the same job),
// owned by the service's leader: only the leader runs it. With the
// embedded provider the handler also applies the change to this host's
// zone (Server.Apply, in the same transaction: the zone is replicated
// state), and the leader's job verifies that every host's server answers
// it. With an external provider the leader's job sends it. No handler
// talks to a DNS server or another host: the job's worker does (apply.go),
// after the commit and outside any transaction. The leader's outcome
// (outcome.go) is applied by every host.
//
// dns-updater.set is a command, which only the leader consumes: its
// handler enqueues a job on the leader's own queue (see handleDNSSet).

func (s *Service) handleInstanceActivated(ctx context.Context, tx *store.Tx, ev *events.InstanceActivated, m service.Delivery) error {
	log := s.log.With(slog.String("instance", ev.Instance), slog.Uint64("epoch", ev.Epoch), slog.String("address", ev.Address))
	if ev.Drill {
		log.InfoContext(ctx, "drill activation: no DNS switched")
		return nil
	}
	if s.p == nil {
		log.InfoContext(ctx, "InstanceActivated ignored: no DNS zone configured (dns.zone)")
		return nil
	}
	ic, ok := s.cfg.Instances[ev.Instance]
	if !ok {
		log.InfoContext(ctx, "InstanceActivated ignored: no DNS name declared for the instance (instances.<name>.dns)")
		return nil
	}
	fail := failure{name: ic.Name, typ: ic.Type, value: ev.Address, instance: ev.Instance, epoch: ev.Epoch, at: m.Timestamp}
	if ev.Epoch > math.MaxInt64 {
		return s.refuse(ctx, tx, fail, fmt.Errorf("%w: epoch %d is out of range", provider.ErrInvalidValue, ev.Epoch))
	}
	epoch := int64(ev.Epoch)
	q := db.New(tx)
	applied, err := lastApplied(ctx, q, ev.Instance)
	if err != nil {
		return fmt.Errorf("InstanceActivated: %w", err)
	}
	seen, err := q.GetSeen(ctx, ev.Instance)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("InstanceActivated: %w", err)
	}
	queued, err := q.MaxQueuedEpoch(ctx, ev.Instance)
	if err != nil {
		return fmt.Errorf("InstanceActivated: %w", err)
	}
	if stale(epoch, applied, queued, seen) {
		log.WarnContext(ctx, "stale InstanceActivated ignored: its epoch is not newer than the last applied, queued or seen for the instance",
			slog.Int64("applied", applied), slog.Int64("queued", queued), slog.Int64("seen", seen))
		return nil
	}
	if err := q.SetSeen(ctx, db.SetSeenParams{Instance: ev.Instance, Epoch: epoch}); err != nil {
		return fmt.Errorf("InstanceActivated: %w", err)
	}
	r, err := provider.Validate(s.cfg.Zone, provider.Record{Name: ic.Name, Type: ic.Type, Value: ev.Address})
	if err != nil {
		return s.refuse(ctx, tx, fail, err)
	}
	// An older activation still queued is superseded: its host has been
	// replaced, so pointing the name at it is pointless (and, once the
	// newer one is applied, harmful).
	older, err := q.PendingActivationsBelow(ctx, db.PendingActivationsBelowParams{Instance: ev.Instance, Epoch: epoch})
	if err != nil {
		return fmt.Errorf("InstanceActivated: %w", err)
	}
	for _, o := range older {
		log.InfoContext(ctx, "a queued activation is superseded by this newer one", slog.Int64("superseded", o.Epoch), slog.String("job", o.ID))
		if err := s.forget(ctx, tx, o.ID); err != nil {
			return fmt.Errorf("InstanceActivated: %w", err)
		}
	}
	err = s.change(ctx, tx, m, changeJob{Kind: kindActivate, Instance: ev.Instance, Name: r.Name, Type: r.Type, Value: r.Value, Epoch: epoch})
	var invalid *invalidChange
	if errors.As(err, &invalid) {
		return s.refuse(ctx, tx, fail, invalid.err)
	}
	return err
}

// handleDNSSet handles the dns-updater.set command. A command is
// consumed once, by the leader (an unaddressed command of a service with a
// leader), so its handler changes no replicated state: it validates the
// request and queues a job on this host's own queue, owned by the leader,
// whose outcome every host applies (outcome.go). A set by hand is thus
// ordered with the other changes of its name by the leader's queue, and
// with the embedded provider applied to every host's zone when its
// DNSRecordUpdated is (see README, "How a change is applied").
func (s *Service) handleDNSSet(ctx context.Context, tx *store.Tx, ev *events.DNSSet, m service.Delivery) error {
	name := provider.CanonicalName(ev.Name)
	inst, owned := s.byName[name]
	typ := "A"
	switch {
	case owned:
		typ = s.cfg.Instances[inst].Type
	case strings.Contains(ev.Address, ":"):
		typ = "AAAA"
	}
	fail := failure{name: ev.Name, typ: typ, value: ev.Address, instance: inst, requestID: m.ID, at: m.Timestamp}
	if s.p == nil {
		return s.refuse(ctx, tx, fail, errNoZone)
	}
	r, err := provider.Validate(s.cfg.Zone, provider.Record{Name: ev.Name, Type: typ, Value: ev.Address})
	if err != nil {
		return s.refuse(ctx, tx, fail, err)
	}
	if !owned {
		return s.refuse(ctx, tx, fail, fmt.Errorf("%w: %s (declare it as an instance's instances.<name>.dns.name to let lifeboat change it)", provider.ErrNotOwned, r.Name))
	}
	s.log.InfoContext(ctx, "dns-updater.set queued", slog.String("name", r.Name), slog.String("address", r.Value), slog.String("reason", ev.Reason),
		slog.String("request_id", m.ID))
	// The newest change of the name this host has applied: a set that
	// finds a newer one when it runs was overtaken by an event (an
	// activation) and is not applied over it.
	after, err := db.New(tx).LastHistoryID(ctx, r.Name)
	if err != nil {
		return fmt.Errorf("dns-updater.set: %w", err)
	}
	return s.enqueue(ctx, tx, m, changeJob{Kind: kindSet, Instance: inst, Name: r.Name, Type: r.Type, Value: r.Value, TTL: ev.TTL,
		RequestID: m.ID, After: after})
}

// handleFailoverStarted lowers the instance's TTL ahead of the switch when
// dns.lower_ttl_before is set, so that resolvers let go of the old address
// soon after the switch.
func (s *Service) handleFailoverStarted(ctx context.Context, tx *store.Tx, ev *events.FailoverStarted, m service.Delivery) error {
	if ev.Drill || s.p == nil || s.cfg.LowerTTLBefore == 0 {
		return nil
	}
	ic, ok := s.cfg.Instances[ev.Instance]
	if !ok {
		return nil
	}
	log := s.log.With(slog.String("instance", ev.Instance), slog.String("name", ic.Name))
	if s.cfg.LowerTTLBefore >= ic.TTL {
		log.InfoContext(ctx, "failover started; TTL not lowered: it is already at or below dns.lower_ttl_before", slog.Uint64("ttl", uint64(ic.TTL)))
		return nil
	}
	q := db.New(tx)
	if ev.Epoch > 0 && ev.Epoch <= math.MaxInt64 {
		applied, err := lastApplied(ctx, q, ev.Instance)
		if err != nil {
			return fmt.Errorf("FailoverStarted: %w", err)
		}
		if int64(ev.Epoch) <= applied {
			log.WarnContext(ctx, "stale FailoverStarted ignored: its epoch is not newer than the last applied", slog.Uint64("epoch", ev.Epoch), slog.Int64("applied", applied))
			return nil
		}
	}
	epoch := int64(min(ev.Epoch, math.MaxInt64))
	if err := q.SetLowered(ctx, db.SetLoweredParams{Instance: ev.Instance, Ttl: int64(s.cfg.LowerTTLBefore), Epoch: epoch, Since: m.Timestamp.UnixMilli()}); err != nil {
		return fmt.Errorf("FailoverStarted: %w", err)
	}
	log.InfoContext(ctx, "failover started: lowering the TTL until it completes", slog.Uint64("ttl", uint64(s.cfg.LowerTTLBefore)), slog.Uint64("from", uint64(ic.TTL)))
	return s.changeTTL(ctx, tx, m, changeJob{Kind: kindTTL, Instance: ev.Instance, Name: ic.Name, Type: ic.Type})
}

// handleFailoverCompleted restores the TTL a planned failover lowered.
func (s *Service) handleFailoverCompleted(ctx context.Context, tx *store.Tx, ev *events.FailoverCompleted, m service.Delivery) error {
	if ev.Drill {
		return nil
	}
	return s.restoreTTL(ctx, tx, m, ev.Instance, ev.Epoch, "failover completed")
}

// handleRestoreFailed restores the TTL when the failover that lowered it
// failed: the name keeps its address and gets its TTL back.
func (s *Service) handleRestoreFailed(ctx context.Context, tx *store.Tx, ev *events.RestoreFailed, m service.Delivery) error {
	if ev.Drill {
		return nil
	}
	return s.restoreTTL(ctx, tx, m, ev.Instance, 0, "restore failed")
}

func (s *Service) restoreTTL(ctx context.Context, tx *store.Tx, m service.Delivery, instance string, epoch uint64, why string) error {
	ic, ok := s.cfg.Instances[instance]
	if s.p == nil || !ok {
		return nil
	}
	q := db.New(tx)
	l, err := q.GetLowered(ctx, instance)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore TTL: %w", err)
	}
	if epoch > 0 && l.Epoch > 0 && epoch < uint64(l.Epoch) {
		// The end of an older failover than the one that lowered the TTL.
		return nil
	}
	if _, err := q.DeleteLowered(ctx, instance); err != nil {
		return fmt.Errorf("restore TTL: %w", err)
	}
	s.log.InfoContext(ctx, why+": restoring the TTL", slog.String("instance", instance), slog.String("name", ic.Name), slog.Uint64("ttl", uint64(ic.TTL)))
	// The TTL is resolved now, with the lowering gone: the instance's own.
	// A TTL change keeps the values the name holds when it is applied, so
	// it never reverts a switch applied before it.
	return s.changeTTL(ctx, tx, m, changeJob{Kind: kindTTL, Instance: instance, Name: ic.Name, Type: ic.Type})
}

// stale says whether an activation under epoch must be ignored, given
// the last epoch applied for its instance, the newest queued and the
// newest seen. Not newer than what was applied or is queued: a late or
// replayed event. Older than an activation already seen (even one that
// failed or was refused): its host has been superseded. Either way
// applying it could point the name back at a dead host. The newest seen
// epoch itself may come again: when it failed, sending it again (with the
// fault fixed) is how an operator retries it.
func stale(epoch, applied, queued, seen int64) bool {
	return epoch <= applied || epoch <= queued || epoch < seen
}

// jobID is the id of the change job message m asks for: one job per
// message, the same on every delivery and on every host.
func jobID(m service.Delivery) string { return workChange + ":" + m.ID }

// invalidChange is a change the embedded zone refuses (a CNAME beside
// other data): the handler answers it with DNSUpdateFailed.
type invalidChange struct{ err error }

func (e *invalidChange) Error() string { return e.err.Error() }

// changeTTL records a TTL change, unless the name has nothing to change
// in the embedded zone.
func (s *Service) changeTTL(ctx context.Context, tx *store.Tx, m service.Delivery, c changeJob) error {
	err := s.change(ctx, tx, m, c)
	var invalid *invalidChange
	if errors.As(err, &invalid) {
		s.log.WarnContext(ctx, "TTL change refused by the zone", slog.String("name", c.Name), slog.String("error", invalid.err.Error()))
		return nil
	}
	return err
}

// change records change c, asked for by event m, on this host: with the
// TTL resolved now (the request's, else the instance's, lowered during a
// planned failover), applied to the embedded zone when that is the
// provider (with its history row and, for an activation, its epoch),
// pending in dns_pending, and queued for the leader. Everything here
// follows from the event and the replicated state, so every host records
// the same; the change's time is m's time in the stream.
func (s *Service) change(ctx context.Context, tx *store.Tx, m service.Delivery, c changeJob) error {
	q := db.New(tx)
	ttl, err := ttlFor(ctx, q, s.cfg, &c)
	if err != nil {
		return err
	}
	c.TTL = ttl
	p := db.AddPendingParams{ID: jobID(m), Seq: int64(m.StreamSeq), Kind: c.Kind, Instance: c.Instance, Name: c.Name, Type: c.Type,
		Value: c.Value, Ttl: int64(ttl), Epoch: c.Epoch, CreatedAt: m.Timestamp.UnixMilli()}
	if s.emb != nil {
		values, old, err := s.applyToZone(ctx, tx, p.ID, c, m.Timestamp)
		if err != nil {
			return err
		}
		if values == nil {
			s.log.InfoContext(ctx, "TTL change skipped: the name has no record yet", slog.String("name", c.Name))
			return nil
		}
		p.Value, p.Old, p.Zoned = strings.Join(values, ","), sql.NullString{String: old, Valid: true}, 1
		c.Value = p.Value
	}
	if err := q.AddPending(ctx, p); err != nil {
		return fmt.Errorf("queue change of %s: %w", c.Name, err)
	}
	return s.enqueue(ctx, tx, m, c)
}

// applyToZone applies change c (job id) to this host's embedded zone in
// tx, dated at, with its history row (not verified yet) and, for an
// activation, its epoch. It returns the values set and the values before;
// nil values when a TTL change finds no record to change. A change the
// zone refuses is an *invalidChange.
func (s *Service) applyToZone(ctx context.Context, tx *store.Tx, id string, c changeJob, at time.Time) (values []string, old string, err error) {
	q := db.New(tx)
	cur, err := q.ListRRset(ctx, db.ListRRsetParams{Zone: s.emb.Zone(), Name: c.Name, Type: c.Type})
	if err != nil {
		return nil, "", fmt.Errorf("records of %s: %w", c.Name, err)
	}
	var before []string
	for _, r := range cur {
		before = append(before, r.Value)
	}
	old = strings.Join(before, ",")
	values = []string{c.Value}
	if c.Kind == kindTTL || c.Value == "" {
		// A TTL change keeps whatever the name holds.
		if len(before) == 0 {
			return nil, old, nil
		}
		values = before
	}
	rs := make([]provider.Record, len(values))
	for i, v := range values {
		rs[i] = provider.Record{Name: c.Name, Type: c.Type, Value: v, TTL: c.TTL}
	}
	if err := s.emb.Apply(ctx, tx, rs, at); err != nil {
		if errors.Is(err, provider.ErrInvalidValue) || errors.Is(err, provider.ErrNotOwned) || errors.Is(err, provider.ErrOutsideZone) ||
			errors.Is(err, provider.ErrUnsupportedType) {
			return nil, old, &invalidChange{err}
		}
		return nil, old, err
	}
	h := history{name: c.Name, typ: c.Type, old: old, value: strings.Join(values, ","), ttl: c.TTL, provider: s.emb.Name(),
		epoch: c.Epoch, at: at, verifiedMs: -1, kind: c.Kind, instance: c.Instance, job: id}
	if err := addHistory(ctx, q, h); err != nil {
		return nil, old, err
	}
	return values, old, nil
}

// enqueue queues the job of change c, asked for by message m, in tx: the
// work queue's job, owned by the leader (which carries ctx's trace, so the
// outcome continues the message's trace), and this host's row about it
// (dns_jobs), together. Every host that applies m queues the same job;
// the leader runs it once tx has committed, and every host removes its
// copy when the leader's outcome is applied.
func (s *Service) enqueue(ctx context.Context, tx *store.Tx, m service.Delivery, c changeJob) error {
	return s.queueJob(ctx, tx, jobID(m), m.Timestamp, c)
}

func (s *Service) queueJob(ctx context.Context, tx *store.Tx, id string, at time.Time, c changeJob) error {
	added, err := tx.Enqueue(ctx, store.Work{ID: id, Kind: workChange, Key: c.Name, Owner: service.OwnerLeader(Name), Payload: c})
	if err != nil {
		return fmt.Errorf("queue change of %s: %w", c.Name, err)
	}
	if !added {
		return nil // queued already, with its row
	}
	if err := db.New(tx).AddJob(ctx, db.AddJobParams{ID: id, Kind: c.Kind, Instance: c.Instance, Name: c.Name, Epoch: c.Epoch,
		CreatedAt: at.UnixMilli()}); err != nil {
		return fmt.Errorf("queue change of %s: %w", c.Name, err)
	}
	return nil
}

// forget removes pending change id, and this host's job for it: resolved
// by its outcome, superseded, or overtaken by a later change of its name.
func (s *Service) forget(ctx context.Context, tx *store.Tx, id string) error {
	q := db.New(tx)
	if _, err := q.DeletePending(ctx, id); err != nil {
		return fmt.Errorf("pending %s: %w", id, err)
	}
	if _, err := tx.WorkDone(ctx, id); err != nil {
		return err
	}
	if _, err := q.DeleteJob(ctx, id); err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	return nil
}

// failure is what a DNSUpdateFailed reports about the change asked for.
type failure struct {
	name, typ, value string
	instance         string
	epoch            uint64
	provider         string
	attempts         int
	// requestID is the dns-updater.set command's id, for its answer.
	requestID string
	// at is when it failed: for a change refused while an event is
	// applied, the event's time in the stream (every host gives the same).
	at time.Time
}

// refuse answers a request that is wrong in itself (an address that is
// not an IP, a name outside the zone or not owned): DNSUpdateFailed at
// once, quoting the offending value, and no retry, since the same request
// would fail the same way.
func (s *Service) refuse(ctx context.Context, tx *store.Tx, f failure, err error) error {
	s.log.WarnContext(ctx, "dns change refused", slog.String("name", f.name), slog.String("value", f.value), slog.String("instance", f.instance), slog.String("error", err.Error()))
	if f.provider == "" && s.p != nil {
		f.provider = s.p.Name()
	}
	return s.emitFailed(ctx, tx, f, err)
}

func (s *Service) emitFailed(ctx context.Context, tx *store.Tx, f failure, err error) error {
	if _, err := tx.Emit(ctx, failedEvent(f, err)); err != nil {
		return fmt.Errorf("emit DNSUpdateFailed: %w", err)
	}
	return nil
}

// failedEvent is the DNSUpdateFailed that reports f, failed with err.
func failedEvent(f failure, err error) *events.DNSUpdateFailed {
	ev := &events.DNSUpdateFailed{
		Name: f.name, Type: f.typ, New: f.value, Provider: f.provider, Instance: f.instance, Epoch: f.epoch,
		Error: err.Error(), Reason: provider.Reason(err), Attempts: f.attempts, FailedAt: f.at.UTC(), RequestID: f.requestID,
	}
	if ev.Name == "" {
		ev.Name = "(none)"
	}
	// Rcode carries the DNS response code, or TSIG error, of a server that
	// answered; other failures say what they are in Error.
	if pe, ok := provider.AsError(err); ok && pe.Rcode >= 0 {
		ev.Rcode = pe.Code
	}
	switch {
	case errors.Is(err, errSuperseded):
		ev.Reason = "SUPERSEDED"
	case errors.Is(err, errExpired):
		ev.Reason = "EXPIRED"
	}
	return ev
}
