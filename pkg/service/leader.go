package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/store"
)

// A service's cluster-wide judgements (a host is down, a lost job is dead,
// a DNS name must move) are made once, by its leader (DESIGN §1 "Decisions
// are made once, by reconciling state"): the host holding the service's
// lease, a key in the service's own KV bucket. The leader reconciles —
// compares the replicated state with what should be and emits what is
// missing — at once on taking the lease, after commits that may need it
// (Nudge), and every Leader.Every. Its decisions carry its epoch; every
// host drops a decision whose epoch is below one it has applied from the
// same leader (a deposed leader's late outbox), and the service's own
// compare-and-set on the state the decision names does the rest, so a
// decision made twice around a takeover applies at most once.

// Leader declares that a service has a leader.
type Leader struct {
	// TTL is the lease's length (default 20 s: renewals stall up to
	// 7.5 s while the node leading the bucket's stream is re-elected).
	TTL time.Duration
	// Every is how often the leader reconciles without a nudge (default
	// 10 s).
	Every time.Duration
	// Reconcile runs only on the leader, one call at a time, with the
	// leader's epoch; ctx ends when leadership does. An error is logged
	// and the next round retries.
	Reconcile func(ctx context.Context, epoch uint64) error
}

// OwnerLeader is the owner of a queued job that only service's leader may
// run.
func OwnerLeader(service string) string { return "leader:" + service }

// HeaderLeader and HeaderEpoch mark a leader's decision: who decided (the
// lease's name, e.g. "leader/dns-updater") and in which epoch.
const (
	HeaderLeader = "Lifeboat-Leader"
	HeaderEpoch  = "Lifeboat-Epoch"
)

// leadership is the runtime's view of its service's leader.
type leadership struct {
	mu    sync.Mutex
	epoch uint64 // this host's epoch while it leads, else 0
	// reconciled is when this host last finished a reconcile, while
	// leading (zero once it stops).
	reconciled time.Time
	bucket     *lease.Bucket
	nudge      chan struct{}
}

// leaderName is the lease's name, what its decisions are fenced by (as
// DecisionEnvelope names it).
func (rt *Runtime) leaderName() string { return "leader/" + rt.Spec.Name }

// Leading returns this host's epoch while it leads the service.
func (rt *Runtime) Leading() (epoch uint64, ok bool) {
	rt.leader.mu.Lock()
	defer rt.leader.mu.Unlock()
	return rt.leader.epoch, rt.leader.epoch != 0
}

// Nudge asks the leader to reconcile soon (call it from tx.AfterCommit of
// a change that may need a decision); it does nothing on other hosts.
func (rt *Runtime) Nudge() {
	select {
	case rt.leader.nudge <- struct{}{}:
	default:
	}
}

// Decide emits ev, the leader's decision key taken in epoch, in tx: its id
// is derived from the service, key and epoch (the same decision taken again
// in the same epoch is one message; a new leader's re-decision is a new
// one, which JetStream's duplicate window cannot swallow), and it carries
// the epoch for fencing. key names the state the decision was made from
// ("host h1 transition 3"); the handlers that apply ev check that state
// still holds.
func (rt *Runtime) Decide(ctx context.Context, tx *store.Tx, epoch uint64, key string, ev any) (id string, err error) {
	env, err := DecisionEnvelope(ctx, rt.Spec.Name, rt.Source, epoch, key, ev)
	if err != nil {
		return "", err
	}
	_, err = tx.EmitEnvelopeOnce(ctx, env) // taken again before the first was published: one message
	return env.ID, err
}

// DecisionEnvelope is the envelope of service's leader's decision key taken
// in epoch (see Decide), for a service that adds headers of its own before
// it emits it with tx.EmitEnvelopeOnce.
func DecisionEnvelope(ctx context.Context, service, source string, epoch uint64, key string, ev any) (bus.Envelope, error) {
	env, err := bus.NewEnvelope(ctx, source, ev)
	if err != nil {
		return env, err
	}
	e := strconv.FormatUint(epoch, 10)
	env.SetID(bus.DerivedID(service, "decision", key, e))
	env.Header[HeaderLeader] = []string{"leader/" + service}
	env.Header[HeaderEpoch] = []string{e}
	return env, nil
}

// fenced says whether message m is a deposed leader's decision, which every
// host drops alike; otherwise it records m's epoch as its leader's latest.
func fenced(ctx context.Context, tx *store.Tx, m Delivery) (bool, error) {
	leader, e := m.HeaderValue(HeaderLeader), m.HeaderValue(HeaderEpoch)
	if leader == "" || e == "" {
		return false, nil
	}
	epoch, err := strconv.ParseUint(e, 10, 64)
	if err != nil {
		return false, fmt.Errorf("%s header %q is not an epoch", HeaderEpoch, e)
	}
	ok, err := tx.Fence(ctx, leader, epoch)
	return !ok, err
}

// lead campaigns for the service's lease for as long as the service runs,
// and while it holds it, reconciles and consumes the cluster-wide commands.
func (rt *Runtime) lead(ctx context.Context, commands *consumer) error {
	spec := rt.Spec.Leader
	opts := lease.NewOptions("lifeboat-leader-" + rt.Spec.Name)
	switch {
	case spec.TTL > 0:
		opts.TTL = spec.TTL
	case rt.Deps.LeaderTTL > 0:
		opts.TTL = rt.Deps.LeaderTTL
	}
	opts.Renew = opts.TTL / 10
	if rt.Deps.LeaseMargin > 0 {
		opts.Margin = rt.Deps.LeaseMargin
	}
	opts.Replicas = rt.Deps.Bus.Replicas()
	opts.Logger = rt.Logger
	if rt.Deps.LeaseAllowance > 0 {
		opts.ElectionAllowance = rt.Deps.LeaseAllowance
	}
	floor, err := rt.DB.LeaderEpoch(ctx, rt.leaderName())
	if err != nil {
		return err
	}
	opts.Floor = floor
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	b, err := lease.Open(ctx, rt.Deps.Bus.JS, opts)
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	rt.leader.mu.Lock()
	rt.leader.bucket = b
	rt.leader.mu.Unlock()
	every := spec.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	err = b.Hold(ctx, "leader", rt.Deps.Host, nil, func(lctx context.Context, l *lease.Lease) {
		rt.leader.mu.Lock()
		rt.leader.epoch = l.Epoch
		rt.leader.mu.Unlock()
		defer func() {
			rt.leader.mu.Lock()
			rt.leader.epoch, rt.leader.reconciled = 0, time.Time{}
			rt.leader.mu.Unlock()
			rt.Logger.Info("leadership ended", slog.Uint64("epoch", l.Epoch))
		}()
		rt.Logger.Info("leading the service", slog.Uint64("epoch", l.Epoch))
		rt.DB.WakeWork() // jobs owned by the leader are this host's now
		var wg sync.WaitGroup
		defer wg.Wait()
		if commands != nil {
			ch, err := rt.sub.Subscribe(lctx, commands.Consumer)
			if err != nil {
				rt.Logger.Error("leader: cannot consume the cluster-wide commands", slog.String("error", err.Error()))
			} else {
				wg.Add(1)
				go func() { defer wg.Done(); rt.consume(lctx, commands, ch) }()
			}
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if spec.Reconcile != nil {
				if err := spec.Reconcile(lctx, l.Epoch); err != nil && lctx.Err() == nil {
					rt.Logger.Warn("reconcile failed; the next round retries", slog.Uint64("epoch", l.Epoch), slog.String("error", err.Error()))
				} else if err == nil {
					rt.leader.mu.Lock()
					rt.leader.reconciled = time.Now()
					rt.leader.mu.Unlock()
				}
			}
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			case <-rt.leader.nudge:
			}
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("leader: %w", err)
	}
	return nil
}

// leaderStatus is who leads the service, as the lease bucket says.
func (rt *Runtime) leaderStatus(ctx context.Context) *api.LeaderStatus {
	rt.leader.mu.Lock()
	b, reconciled := rt.leader.bucket, rt.leader.reconciled
	rt.leader.mu.Unlock()
	if b == nil {
		return nil
	}
	st := &api.LeaderStatus{}
	if !reconciled.IsZero() {
		at := reconciled.UTC()
		st.ReconciledAt = &at
	}
	rec, _, err := b.Get(ctx, "leader")
	if err == nil {
		st.Host, st.Epoch = rec.Holder, rec.Epoch
	}
	st.Self = st.Host == rt.Deps.Host
	return st
}
