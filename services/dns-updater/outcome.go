package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// The leader's outcome of a change, DNSRecordUpdated or DNSUpdateFailed,
// is a decision (DESIGN §1): its id is derived from the change and the
// leader's epoch, it carries the epoch (every host drops a deposed
// leader's late decision), and it names the change in a header, since the
// catalog's events do not carry the change's id. Every host applies it
// once: only while the change it names is still pending (a
// compare-and-set on dns_pending), so an outcome decided twice around a
// takeover, by the old leader and the new, is applied once. Applying it
// records what followed on every host alike: the history, the epoch, the
// embedded zone for a set by hand, and the job leaves every host's queue.
//
// The failures this service emits while it applies an event (a change
// refused: not an IP, not owned) carry no such header; they change
// nothing and are ignored here.

const (
	// headerChange names the change an outcome answers (its job id).
	headerChange = "Lifeboat-Dns-Change"
	// headerApplied, on a DNSUpdateFailed, says that the external
	// provider holds the change (set, but not verified), and carries the
	// values the name had before, quoted (strconv.Quote); every host then
	// records the change in the history as not verified.
	headerApplied = "Lifeboat-Dns-Applied"
)

// decide emits ev, the leader's outcome of change job, in tx, as
// service.Runtime.Decide does (service.DecisionEnvelope), with the change's header (and, for a
// change an external provider holds without verification, the values
// before). epoch is the leader's when the job started; 0 (no runtime:
// tests that call the worker) emits no fencing headers.
func (s *Service) decide(ctx context.Context, tx *store.Tx, epoch uint64, job string, ev any, applied *result) error {
	env, err := service.DecisionEnvelope(ctx, Name, s.source, epoch, job, ev)
	if err != nil {
		return err
	}
	if epoch == 0 {
		// No leader (a test that runs the worker alone): nothing to fence.
		delete(env.Header, service.HeaderLeader)
		delete(env.Header, service.HeaderEpoch)
	}
	env.Header[headerChange] = []string{job}
	if applied != nil {
		env.Header[headerApplied] = []string{strconv.Quote(applied.old)}
	}
	_, err = tx.EmitEnvelopeOnce(ctx, env)
	return err
}

func (s *Service) handleDNSRecordUpdated(ctx context.Context, tx *store.Tx, ev *events.DNSRecordUpdated, m service.Delivery) error {
	job := m.HeaderValue(headerChange)
	if job == "" {
		return nil
	}
	q := db.New(tx)
	at := m.Timestamp
	if !ev.UpdatedAt.IsZero() {
		at = ev.UpdatedAt
	}
	verified := int64(ev.VerifiedAfter)
	p, pending, err := s.resolve(ctx, tx, job)
	if err != nil {
		return fmt.Errorf("DNSRecordUpdated: %w", err)
	}
	switch {
	case pending && p.Zoned == 1:
		// Applied to every host's zone when asked for; now verified.
		if err := q.SetVerified(ctx, db.SetVerifiedParams{VerifiedAfterMs: verified, Job: job}); err != nil {
			return fmt.Errorf("DNSRecordUpdated: %w", err)
		}
	case pending:
		// Sent to the external provider by the leader.
		h := history{name: ev.Name, typ: ev.Type, old: ev.Old, value: ev.New, ttl: ev.TTL, provider: ev.Provider, epoch: p.Epoch,
			at: at, verifiedMs: verified, kind: p.Kind, instance: p.Instance, job: job}
		if err := addHistory(ctx, q, h); err != nil {
			return fmt.Errorf("DNSRecordUpdated: %w", err)
		}
	case isSet(job, ev.RequestID):
		// A set by hand, which only the leader held.
		if err := s.applySetOutcome(ctx, tx, ev, job, at); err != nil {
			return fmt.Errorf("DNSRecordUpdated: %w", err)
		}
	}
	return nil
}

func (s *Service) handleDNSUpdateFailed(ctx context.Context, tx *store.Tx, ev *events.DNSUpdateFailed, m service.Delivery) error {
	job := m.HeaderValue(headerChange)
	if job == "" {
		return nil // a refusal, emitted while an event or command was applied
	}
	p, pending, err := s.resolve(ctx, tx, job)
	if err != nil {
		return fmt.Errorf("DNSUpdateFailed: %w", err)
	}
	quoted, ok := m.Header[headerApplied]
	if !ok || len(quoted) == 0 {
		// Nothing was changed (or, for the embedded zone, the change
		// stays recorded as not verified).
		return nil
	}
	old, err := strconv.Unquote(quoted[0])
	if err != nil {
		return fmt.Errorf("DNSUpdateFailed: %s header %q: %w", headerApplied, quoted[0], err)
	}
	q := db.New(tx)
	kind, instance, epoch, ttl := kindSet, ev.Instance, int64(0), uint32(0)
	switch {
	case pending:
		kind, instance, epoch, ttl = p.Kind, p.Instance, p.Epoch, uint32(p.Ttl)
	case isSet(job, ev.RequestID):
		if recorded, err := inHistory(ctx, q, job); err != nil || recorded {
			return err
		}
	default:
		return nil
	}
	at := m.Timestamp
	if !ev.FailedAt.IsZero() {
		at = ev.FailedAt
	}
	// The provider holds the change: it is in the history, not verified.
	h := history{name: ev.Name, typ: ev.Type, old: old, value: ev.New, ttl: ttl, provider: ev.Provider, epoch: epoch,
		at: at, verifiedMs: -1, kind: kind, instance: instance, job: job}
	if err := addHistory(ctx, q, h); err != nil {
		return fmt.Errorf("DNSUpdateFailed: %w", err)
	}
	return nil
}

// resolve takes change job off this host's queue and, when it is still
// pending, off dns_pending, with the changes of its name asked for before
// it: the leader makes the changes of a name in order, so those are done
// (one the leader found nothing to do for has no outcome of its own). It
// returns the pending change, if it was.
func (s *Service) resolve(ctx context.Context, tx *store.Tx, job string) (db.DnsPending, bool, error) {
	q := db.New(tx)
	if _, err := tx.WorkDone(ctx, job); err != nil {
		return db.DnsPending{}, false, err
	}
	if _, err := q.DeleteJob(ctx, job); err != nil {
		return db.DnsPending{}, false, fmt.Errorf("job %s: %w", job, err)
	}
	p, err := q.GetPending(ctx, job)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil // answered already, or superseded
	}
	if err != nil {
		return p, false, fmt.Errorf("pending %s: %w", job, err)
	}
	before, err := q.PendingBefore(ctx, db.PendingBeforeParams{Name: p.Name, Seq: p.Seq, ID: p.ID})
	if err != nil {
		return p, false, fmt.Errorf("pending changes of %s: %w", p.Name, err)
	}
	for _, b := range before {
		if err := s.forget(ctx, tx, b.ID); err != nil {
			return p, false, err
		}
	}
	if _, err := q.DeletePending(ctx, job); err != nil {
		return p, false, fmt.Errorf("pending %s: %w", job, err)
	}
	return p, true, nil
}

// applySetOutcome records a set by hand that the leader made (an external
// provider) or verified at its own server (the embedded zone, which every
// host changes here), unless its history holds it already. The embedded
// zone takes it only while the name still holds the values the leader saw
// (the event's Old): a change applied since (an activation) is not
// reverted by it.
func (s *Service) applySetOutcome(ctx context.Context, tx *store.Tx, ev *events.DNSRecordUpdated, job string, at time.Time) error {
	q := db.New(tx)
	if recorded, err := inHistory(ctx, q, job); err != nil || recorded {
		return err
	}
	if ev.Provider == ProviderEmbedded && s.emb != nil {
		cur, err := q.ListRRset(ctx, db.ListRRsetParams{Zone: s.emb.Zone(), Name: ev.Name, Type: ev.Type})
		if err != nil {
			return fmt.Errorf("records of %s: %w", ev.Name, err)
		}
		var values []string
		for _, r := range cur {
			values = append(values, r.Value)
		}
		if strings.Join(values, ",") != ev.Old {
			s.log.WarnContext(ctx, "set by hand not applied: the name changed after the leader decided it", slog.String("name", ev.Name),
				slog.String("holds", strings.Join(values, ",")), slog.String("decided_from", ev.Old), slog.String("request_id", ev.RequestID))
			return nil
		}
		var rs []provider.Record
		for _, v := range strings.Split(ev.New, ",") {
			rs = append(rs, provider.Record{Name: ev.Name, Type: ev.Type, Value: v, TTL: ev.TTL})
		}
		if err := s.emb.Apply(ctx, tx, rs, at); err != nil {
			s.log.WarnContext(ctx, "set by hand not applied: the zone refuses it", slog.String("name", ev.Name), slog.String("error", err.Error()))
			return nil
		}
	}
	h := history{name: ev.Name, typ: ev.Type, old: ev.Old, value: ev.New, ttl: ev.TTL, provider: ev.Provider,
		at: at, verifiedMs: int64(ev.VerifiedAfter), kind: kindSet, instance: s.byName[ev.Name], job: job}
	return addHistory(ctx, q, h)
}

// isSet says whether job is a set by hand: the job of the command
// requestID, or one queued by an older version (which carries no
// request id; every other change it queued is pending).
func isSet(job, requestID string) bool {
	if requestID != "" {
		return job == workChange+":"+requestID
	}
	return strings.HasPrefix(job, workChange+":queued-")
}

// inHistory says whether change job is recorded in the history.
func inHistory(ctx context.Context, q *db.Queries, job string) (bool, error) {
	_, err := q.GetHistoryByJob(ctx, job)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("history of %s: %w", job, err)
	}
	return true, nil
}

// history is a row of dns_history.
type history struct {
	name, typ, old, value string
	ttl                   uint32
	provider              string
	epoch                 int64
	at                    time.Time
	verifiedMs            int64 // -1: not verified
	kind, instance, job   string
}

// addHistory appends a history row and, for an activation, moves the
// instance's epoch: the name points at the activation's host.
func addHistory(ctx context.Context, q *db.Queries, h history) error {
	if h.value == "" {
		h.value = h.old // a TTL change keeps the values
	}
	at := h.at.UnixMilli()
	if _, err := q.AddHistory(ctx, db.AddHistoryParams{Name: h.name, Type: h.typ, Old: h.old, New: h.value, Ttl: int64(h.ttl),
		Provider: h.provider, Epoch: h.epoch, At: at, VerifiedAfterMs: h.verifiedMs, Kind: h.kind, Instance: h.instance, Job: h.job}); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if h.kind == kindActivate {
		if err := q.SetEpoch(ctx, db.SetEpochParams{Instance: h.instance, Epoch: h.epoch, Name: h.name, Address: h.value, AppliedAt: at}); err != nil {
			return fmt.Errorf("epoch: %w", err)
		}
	}
	return nil
}
