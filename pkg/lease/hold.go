package lease

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStepDown is the cause of a holder's context ending at its step-down
// deadline (context.Cause).
var ErrStepDown = errors.New("lease: step-down deadline reached without a successful renewal")

// Hold campaigns for key as holder until ctx ends, and returns ctx's error.
//
// While the key is free, and may (nil: always) allows this host to take it,
// Hold takes it; it looks again every Options.Renew, and at once when the
// key is released (it watches the key). While it holds the key it calls on
// with a copy of the lease taken (its Epoch is the tenure's) and a context
// that ends at the step-down deadline (Lease.StepDownAt of the last
// successful renewal), when a renewal finds the lease lost, or when ctx
// ends: context.Cause says which (ErrStepDown, ErrLost, or ctx's). on must
// return once its context ends, and may return earlier to give the lease
// up. Renewals run every Options.Renew; one that fails for a passing reason
// (the bucket's stream electing a leader: timeouts, no responders) is
// retried until the step-down deadline. When on has returned, the lease is
// released unless it was lost, so another host takes over at once, and
// Hold campaigns again after one Renew interval (unless ctx has ended).
func (b *Bucket) Hold(ctx context.Context, key, holder string, may func() bool, on func(ctx context.Context, l *Lease)) error {
	log := b.opts.Logger.With(slog.String("lease", b.name(key)), slog.String("holder", holder))
	released, stop := b.watchReleases(ctx, key)
	defer stop()
	var warned time.Time // campaign failures are logged every 10 s at most
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := b.campaign(ctx, key, holder, may)
		if err != nil && ctx.Err() == nil && time.Since(warned) >= 10*time.Second {
			warned = time.Now()
			log.Warn("cannot take the lease; trying again", slog.String("error", err.Error()))
		}
		wake := released
		if l != nil {
			b.hold(ctx, log, l, on)
			wake = nil // our own release is no reason to take it again at once
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.opts.Renew):
		case <-wake:
		}
	}
}

// campaign takes the key if it is free and may allows: nil and no error
// when it is not; an error when it cannot tell or take it.
func (b *Bucket) campaign(ctx context.Context, key, holder string, may func() bool) (*Lease, error) {
	cctx, cancel := context.WithTimeout(ctx, max(b.opts.TTL/4, time.Second))
	defer cancel()
	if _, _, err := b.Get(cctx, key); err == nil {
		return nil, nil // held; Acquire would say so, at more cost
	}
	if may != nil && !may() {
		return nil, nil
	}
	l, err := b.Acquire(cctx, key, holder)
	if errors.Is(err, ErrHeld) {
		return nil, nil
	}
	return l, err
}

// watchReleases signals when key is deleted or purged (released). Where
// the watch cannot be set up, nothing is signalled and campaigning polls.
func (b *Bucket) watchReleases(ctx context.Context, key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w, err := b.kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		b.opts.Logger.Debug("not watching the lease; polling it", slog.String("lease", b.name(key)), slog.String("error", err.Error()))
		return ch, func() {}
	}
	go func() { // ends when the watcher stops: its channel is closed
		for e := range w.Updates() {
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, func() { _ = w.Stop() }
}

// hold runs on while l is held, renewing it, and releases it afterwards
// unless it was lost.
func (b *Bucket) hold(ctx context.Context, log *slog.Logger, l *Lease, on func(ctx context.Context, l *Lease)) {
	o := b.opts
	log = log.With(slog.Uint64("epoch", l.Epoch))
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stepDown := time.AfterFunc(l.StepDownAt(o).Sub(o.Now()), func() { cancel(ErrStepDown) })
	defer stepDown.Stop()
	log.Info("holding the lease", slog.Time("step_down_at", l.StepDownAt(o)))
	done := make(chan struct{})
	view := *l // on reads its copy; l is renewed here
	go func() { defer close(done); on(hctx, &view) }()

	renew := time.NewTicker(o.Renew)
	defer renew.Stop()
	lost := false
loop:
	for {
		select {
		case <-hctx.Done():
			break loop
		case <-done:
			break loop
		case <-renew.C:
		}
		deadline := l.StepDownAt(o)
		rctx, rcancel := context.WithTimeout(hctx, min(o.Renew, deadline.Sub(o.Now())))
		err := b.Renew(rctx, l)
		rcancel()
		switch {
		case err == nil:
			if !stepDown.Stop() {
				break loop // the deadline passed meanwhile: stepped down
			}
			stepDown.Reset(l.StepDownAt(o).Sub(o.Now()))
		case errors.Is(err, ErrLost):
			lost = true
			cancel(err)
			break loop
		case hctx.Err() == nil:
			log.Warn("renewal failed; retrying until the step-down deadline", slog.Time("step_down_at", deadline),
				slog.Duration("since_last_renewal", o.Now().Sub(l.Sent).Round(time.Millisecond)), slog.String("error", err.Error()))
		}
	}
	cancel(context.Canceled) // no-op when a cause is already set
	<-done

	switch cause := context.Cause(hctx); {
	case errors.Is(cause, ErrStepDown):
		log.Error("stepped down: no renewal succeeded in time",
			slog.Duration("since_last_renewal", o.Now().Sub(l.Sent).Round(time.Millisecond)), slog.Time("last_renewal_sent", l.Sent),
			slog.Duration("ttl", o.TTL), slog.Duration("stop_timeout", o.StopTimeout), slog.Duration("margin", o.Margin))
	case lost:
		log.Warn("the lease was lost", slog.String("error", cause.Error()))
		return
	}
	// Given up (shutdown, on returned, or stepped down): released for the
	// next holder at once if it is still ours. ctx may be over, so the
	// release gets its own.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), min(2*time.Second, o.TTL/4))
	defer rcancel()
	if err := b.Release(rctx, l); err != nil {
		log.Warn("lease not released; it expires by itself", slog.String("error", err.Error()))
		return
	}
	log.Info("lease released")
}
