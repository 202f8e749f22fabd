// Package lease is lifeboat's one lease: a key in a JetStream KV bucket
// whose TTL is the lease's length (DESIGN §1 "Instances"). A service's
// leader and an instance's active host both hold one.
//
// Taken with Create (it fails while someone holds the key), renewed with
// Update on the revision the holder last wrote (an Update on a stale
// revision is refused: the holder has lost it), and left unrenewed the key
// is gone about TTL + 0.4 s later. The bucket's TTL is used, not a per-key
// TTL, which Update drops (nats.go #1994). The epoch is one number that
// never goes backwards: generation × 2^40 + the revision Create returned,
// where the generation is kept in the bucket's metadata and a newly created
// bucket takes one above the highest epoch any host applied (Options.Floor),
// so an epoch stays above every earlier one also when the bucket is
// re-created or the control plane restored.
//
// A holder steps down before the lease can expire: once the time since it
// sent its last successful renewal, plus the stop hook's timeout and a
// margin for the clock skew between hosts, reaches the TTL. Measured here
// (three nodes, R3): while the node leading the bucket's stream is
// re-elected after a kill -9, renewals fail for 4.5–7.5 s, so the TTL
// defaults to 20 s, renewed every 2 s, and a TTL that cannot outlast an
// election plus the stop hook plus the margin is refused.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bus"
)

// Errors of the lease's life.
var (
	// ErrHeld: someone else holds the lease.
	ErrHeld = errors.New("lease: held by another host")
	// ErrLost: the lease is no longer ours (it expired, or another holder
	// took it).
	ErrLost = errors.New("lease: lost")
	// ErrFree: nobody holds the lease.
	ErrFree = errors.New("lease: free")
)

// generationShift places the generation above any revision a bucket
// reaches (2^40 writes).
const generationShift = 40

// metaGeneration is the bucket metadata key holding its generation.
const metaGeneration = "lifeboat.generation"

// Options shape a lease bucket.
type Options struct {
	// Bucket is the KV bucket's name.
	Bucket string
	// TTL is the lease's length: the bucket's TTL.
	TTL time.Duration
	// Renew is how often the holder renews (default TTL/10).
	Renew time.Duration
	// Margin covers the clock skew between hosts: the stream leader that
	// expires the key judges by its own clock (default 1 s).
	Margin time.Duration
	// StopTimeout is how long the holder needs to stop acting (an
	// instance's stop hook); 0 for a service leader.
	StopTimeout time.Duration
	// ElectionAllowance is how long renewals may stall while the bucket's
	// stream elects a new leader (7.5 s measured); the TTL must outlast it.
	ElectionAllowance time.Duration
	// Replicas of the bucket.
	Replicas int
	// Floor is the highest epoch any host applied: a bucket created now
	// takes a generation above it.
	Floor  uint64
	Logger *slog.Logger
}

// NewOptions returns the defaults for bucket.
func NewOptions(bucket string) Options {
	return Options{Bucket: bucket, TTL: 20 * time.Second, Margin: time.Second, ElectionAllowance: 7500 * time.Millisecond, Replicas: 1}
}

func (o *Options) defaults() {
	if o.Renew <= 0 {
		o.Renew = o.TTL / 10
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate refuses a TTL too short to outlast an election of the bucket's
// stream leader plus the stop hook plus the margin.
func (o Options) Validate() error {
	if o.Bucket == "" {
		return errors.New("lease: no bucket name")
	}
	need := o.ElectionAllowance + o.StopTimeout + o.Margin
	if o.TTL <= need {
		return fmt.Errorf("lease %s: TTL %s is too short: it must outlast a stream leader election (%s) + the stop hook (%s) + the clock-skew margin (%s) = %s",
			o.Bucket, o.TTL, o.ElectionAllowance, o.StopTimeout, o.Margin, need)
	}
	if o.Renew > 0 && o.Renew >= o.TTL-need {
		return fmt.Errorf("lease %s: renewing every %s leaves no time to renew before the step-down (TTL %s - %s)", o.Bucket, o.Renew, o.TTL, need)
	}
	return nil
}

// Record is a lease key's value.
type Record struct {
	Holder     string    `json:"holder"`
	Epoch      uint64    `json:"epoch"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
}

// Lease is a lease this process holds.
type Lease struct {
	Key, Holder string
	// Epoch is fixed for the whole tenure.
	Epoch uint64
	// Revision is the key's revision the holder last wrote.
	Revision uint64
	// Sent is when the last successful write (the Create or a renewal)
	// was sent, by this host's clock.
	Sent       time.Time
	acquiredAt time.Time
}

// StepDownAt is when the holder must have stopped acting: its last
// successful write's send time plus the TTL, less the stop hook's timeout
// and the margin.
func (l *Lease) StepDownAt(o Options) time.Time {
	return l.Sent.Add(o.TTL - o.StopTimeout - o.Margin)
}

// Bucket is a lease bucket.
type Bucket struct {
	kv         jetstream.KeyValue
	opts       Options
	generation uint64
}

// Open creates the bucket, or binds to it (raising its replicas when asked
// for more), retrying while a forming cluster cannot take it yet.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Bucket, error) {
	o.defaults()
	b := &Bucket{opts: o}
	what := "lease bucket " + o.Bucket
	state := func() string { return "a majority of the cluster's nodes must run" }
	err := bus.RetryForming(ctx, o.Logger, state, what, func(ctx context.Context) error {
		kv, err := js.KeyValue(ctx, o.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			gen := uint64(0)
			if o.Floor > 0 {
				gen = o.Floor>>generationShift + 1
			}
			if kv, err = js.CreateKeyValue(ctx, o.config(gen)); errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, o.Bucket) // another host created it meanwhile
			}
		}
		if err != nil {
			return err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		cfg := st.(*jetstream.KeyValueBucketStatus).Config()
		b.generation, _ = strconv.ParseUint(cfg.Metadata[metaGeneration], 10, 64)
		if cfg.Replicas < o.Replicas || cfg.TTL != o.TTL {
			want := o.config(b.generation)
			if kv, err = js.UpdateKeyValue(ctx, want); err != nil {
				return err
			}
		}
		b.kv = kv
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (o Options) config(generation uint64) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "Lifeboat leases: a key is held while its holder renews it within the TTL",
		History:     1,
		TTL:         o.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Metadata:    map[string]string{metaGeneration: strconv.FormatUint(generation, 10)},
	}
}

// Options are the bucket's options.
func (b *Bucket) Options() Options { return b.opts }

// epoch is the epoch of a key written at revision.
func (b *Bucket) epoch(revision uint64) uint64 { return b.generation<<generationShift + revision }

// Acquire takes the lease key for holder; ErrHeld (naming the holder) when
// someone holds it.
func (b *Bucket) Acquire(ctx context.Context, key, holder string) (*Lease, error) {
	sent := time.Now()
	// The epoch is the revision Create returns, which is not known before:
	// the value is written with epoch 0 and rewritten at once with it.
	rev, err := b.kv.Create(ctx, key, b.value(Record{Holder: holder, AcquiredAt: sent.UTC(), RenewedAt: sent.UTC()}))
	if errors.Is(err, jetstream.ErrKeyExists) {
		if rec, _, gerr := b.Get(ctx, key); gerr == nil {
			return nil, fmt.Errorf("%w: %s holds %s/%s (epoch %d)", ErrHeld, rec.Holder, b.opts.Bucket, key, rec.Epoch)
		}
		return nil, fmt.Errorf("%w: %s/%s", ErrHeld, b.opts.Bucket, key)
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s/%s: %w", b.opts.Bucket, key, err)
	}
	l := &Lease{Key: key, Holder: holder, Epoch: b.epoch(rev), Revision: rev, Sent: sent, acquiredAt: sent.UTC()}
	if err := b.Renew(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

// Renew writes the lease again on its revision, keeping it alive; ErrLost
// when the revision is stale or the key is gone.
func (b *Bucket) Renew(ctx context.Context, l *Lease) error {
	sent := time.Now()
	rev, err := b.kv.Update(ctx, l.Key, b.value(Record{Holder: l.Holder, Epoch: l.Epoch, AcquiredAt: l.acquiredAt, RenewedAt: sent.UTC()}), l.Revision)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) ||
			(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)) {
			return fmt.Errorf("%w: %s/%s (epoch %d): %v", ErrLost, b.opts.Bucket, l.Key, l.Epoch, err)
		}
		return fmt.Errorf("lease %s/%s: renew: %w", b.opts.Bucket, l.Key, err)
	}
	l.Revision, l.Sent = rev, sent
	return nil
}

// Release gives the lease up at once, if it is still ours, so that another
// host can take it without waiting for it to expire.
func (b *Bucket) Release(ctx context.Context, l *Lease) error {
	if err := b.kv.Delete(ctx, l.Key, jetstream.LastRevision(l.Revision)); err != nil {
		return fmt.Errorf("lease %s/%s: release: %w", b.opts.Bucket, l.Key, err)
	}
	return nil
}

// Get reads the lease key: its record and revision; ErrFree when nobody
// holds it.
func (b *Bucket) Get(ctx context.Context, key string) (Record, uint64, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Record{}, 0, fmt.Errorf("%w: %s/%s", ErrFree, b.opts.Bucket, key)
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("lease %s/%s: %w", b.opts.Bucket, key, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, 0, fmt.Errorf("lease %s/%s: unreadable value: %w", b.opts.Bucket, key, err)
	}
	if r.Epoch == 0 {
		r.Epoch = b.epoch(e.Revision()) // taken a moment ago, not yet rewritten
	}
	return r, e.Revision(), nil
}

// List reads every held lease of the bucket, by key.
func (b *Bucket) List(ctx context.Context) (map[string]Record, error) {
	keys, err := b.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string]Record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", b.opts.Bucket, err)
	}
	sort.Strings(keys)
	out := map[string]Record{}
	for _, k := range keys {
		r, _, err := b.Get(ctx, k)
		if errors.Is(err, ErrFree) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

func (b *Bucket) value(r Record) []byte {
	v, _ := json.Marshal(r) // a struct of strings, numbers and times
	return v
}

// Hold campaigns for key as holder until ctx ends: whenever the key is free
// (and may, when set, allows this host to take it) it takes it, and while
// it holds it calls on with a context that ends at the step-down deadline,
// when a renewal finds the lease lost, or when ctx ends; on must return
// once its context ends. Renewals run every Options.Renew; a failing one
// (the bucket's stream electing a leader) is retried until the step-down
// deadline. On a clean end the lease is released, so another host takes
// over at once.
func (b *Bucket) Hold(ctx context.Context, key, holder string, may func() bool, on func(ctx context.Context, l *Lease)) error {
	log := b.opts.Logger.With(slog.String("lease", b.opts.Bucket+"/"+key))
	for {
		if may == nil || may() {
			l, err := b.Acquire(ctx, key, holder)
			switch {
			case err == nil:
				b.hold(ctx, log, l, on)
			case errors.Is(err, ErrHeld):
			case ctx.Err() == nil:
				log.Warn("cannot take the lease; trying again", slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.opts.Renew):
		}
	}
}

// hold runs on while l is held, renewing it.
func (b *Bucket) hold(ctx context.Context, log *slog.Logger, l *Lease, on func(ctx context.Context, l *Lease)) {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); on(hctx, l) }()
	release := true // unless the lease is lost or out of time
	defer func() {
		cancel()
		<-done
		if !release {
			return
		}
		// The lease is given up for the next holder at once. ctx may be
		// over (shutting down), so the release gets its own.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		if err := b.Release(rctx, l); err != nil {
			log.Warn("lease not released; it expires by itself", slog.String("error", err.Error()))
		}
	}()
	stepDown := time.NewTimer(time.Until(l.StepDownAt(b.opts)))
	defer stepDown.Stop()
	renew := time.NewTicker(b.opts.Renew)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-stepDown.C:
			release = false
			log.Error("stepping down: no renewal succeeded in time",
				slog.Uint64("epoch", l.Epoch), slog.Duration("since_last_renewal", time.Since(l.Sent).Round(time.Millisecond)), slog.Duration("ttl", b.opts.TTL))
			return
		case <-renew.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, b.opts.Renew)
		err := b.Renew(rctx, l)
		rcancel()
		switch {
		case err == nil:
			stepDown.Reset(time.Until(l.StepDownAt(b.opts)))
		case errors.Is(err, ErrLost):
			release = false
			log.Warn("the lease was lost", slog.Uint64("epoch", l.Epoch), slog.String("error", err.Error()))
			return
		case ctx.Err() == nil:
			log.Warn("renewal failed; retrying until the step-down deadline", slog.Uint64("epoch", l.Epoch),
				slog.Time("step_down_at", l.StepDownAt(b.opts)), slog.String("error", err.Error()))
		}
	}
}
