// Package lease is lifeboat's one lease: a key in a JetStream KV bucket
// whose TTL is the lease's length (DESIGN §1 "Instances"). A service's
// leader and an instance's active host both hold one.
//
// The bucket: KV bucket Options.Bucket (stream "KV_<bucket>"), History 1,
// the bucket's TTL (MaxAge) = Options.TTL, file storage, Options.Replicas,
// and metadata "lifeboat.generation" = the bucket's generation in decimal.
// The bucket's TTL is used, not a per-key TTL, which Update drops (nats.go
// #1994). A key is one lease (a service leader uses "leader"); its value is
// the JSON of a Record:
//
//	{"holder":"hot","epoch":1099511627777,"acquired_at":"…","renewed_at":"…"}
//
// with the times in RFC 3339 (UTC, by the holder's clock). renewed_at is the
// send time of the write that carried it.
//
// A lease is taken with Create (it fails while someone holds the key),
// renewed with Update on the revision the holder last wrote (an Update on a
// stale revision is refused: the holder has lost it), and left unrenewed
// the key is gone about TTL + 0.4 s later.
//
// The epoch is one number that never goes backwards: generation × 2^40 +
// the revision Create returned. It is fixed for the whole tenure. A bucket
// takes its generation when it is created and keeps it: 0 when
// Options.Floor is 0 (a new cluster: the first epoch is 1), otherwise
// Floor>>40 + 1, one above the generation of the highest epoch any host has
// applied, so the epochs of a bucket re-created after a loss or a restore
// of the control plane start above every earlier one. (An existing bucket
// whose next epoch would not be above the floor, re-created by a host that
// had not applied the highest epoch, is raised to that generation too.)
//
// A holder steps down before its lease can expire: at
// Lease.StepDownAt, the send time of its last successful write plus the
// TTL, less the stop hook's timeout and a margin for the clock skew between
// hosts (the stream leader that expires the key judges by its own clock;
// Skew measures it). Measured here (three nodes, R3): while the node
// leading the bucket's stream is re-elected after a kill -9, renewals fail
// for 4.5–7.5 s, so the TTL defaults to 20 s, renewed every 2 s, and
// Options.Validate refuses a TTL that cannot outlast an election plus the
// stop hook plus the margin.
//
// Use:
//
//	o := lease.NewOptions("lifeboat-leader-sync")
//	o.Replicas, o.Floor = 3, highestAppliedEpoch
//	b, err := lease.Open(ctx, js, o) // validates, creates or binds
//	err = b.Hold(ctx, "leader", host, nil, func(ctx context.Context, l *lease.Lease) {
//		// lead at l.Epoch until ctx ends: step-down, lost, or shutdown
//	})
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
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

// GenerationShift places the generation above any revision a bucket
// reaches (2^40 writes): epoch = generation<<GenerationShift + revision.
const GenerationShift = 40

// MetaGeneration is the bucket metadata key holding its generation.
const MetaGeneration = "lifeboat.generation"

// Defaults.
const (
	DefaultTTL               = 20 * time.Second
	DefaultMargin            = time.Second
	DefaultElectionAllowance = 7500 * time.Millisecond // the longest stall measured, see the package doc
)

// Options shape a lease bucket. Zero TTL, Renew, ElectionAllowance,
// Replicas, Now and Logger take their defaults; NewOptions fills them all,
// and Margin's 1 s.
type Options struct {
	// Bucket is the KV bucket's name.
	Bucket string
	// TTL is the lease's length: the bucket's TTL (default 20 s).
	TTL time.Duration
	// Renew is how often the holder renews (default TTL/10).
	Renew time.Duration
	// Margin covers the clock skew between hosts: the stream leader that
	// expires the key judges by its own clock (NewOptions: 1 s).
	Margin time.Duration
	// StopTimeout is how long the holder needs to stop acting (an
	// instance's stop hook); 0 for a service leader.
	StopTimeout time.Duration
	// ElectionAllowance is how long renewals may stall while the bucket's
	// stream elects a new leader (default 7.5 s, measured); the TTL must
	// outlast it. Tests lower it to use short TTLs.
	ElectionAllowance time.Duration
	// Replicas of the bucket (default 1). An existing bucket with fewer is
	// raised; one with more keeps them.
	Replicas int
	// Floor is the highest epoch any host has applied: a bucket created
	// now takes a generation above it. An existing bucket keeps its own
	// unless its next epoch would not be above Floor.
	Floor uint64
	// Now is the clock of send times and of the records' times (default
	// time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// NewOptions returns the defaults for bucket.
func NewOptions(bucket string) Options {
	o := Options{Bucket: bucket, Margin: DefaultMargin}
	o.defaults()
	return o
}

func (o *Options) defaults() {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Renew <= 0 {
		o.Renew = o.TTL / 10
	}
	if o.ElectionAllowance <= 0 {
		o.ElectionAllowance = DefaultElectionAllowance
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate refuses a TTL too short to outlast an election of the bucket's
// stream leader plus the stop hook plus the margin, and a renewal interval
// that leaves no time for an election before the step-down.
func (o Options) Validate() error {
	o.defaults()
	if o.Bucket == "" {
		return errors.New("lease: no bucket name")
	}
	if o.Margin < 0 || o.StopTimeout < 0 {
		return fmt.Errorf("lease %s: negative margin (%s) or stop hook timeout (%s)", o.Bucket, o.Margin, o.StopTimeout)
	}
	need := o.ElectionAllowance + o.StopTimeout + o.Margin
	if o.TTL <= need {
		return fmt.Errorf("lease %s: TTL %s is too short: it must outlast a stream leader election (%s) + the stop hook (%s) + the clock-skew margin (%s) = %s",
			o.Bucket, o.TTL, o.ElectionAllowance, o.StopTimeout, o.Margin, need)
	}
	// The renewal after the last successful one may stall for a whole
	// election and must still land before the step-down.
	if o.Renew >= o.TTL-need {
		return fmt.Errorf("lease %s: renewing every %s leaves no time for a stream leader election before the step-down: it must be under TTL %s - %s = %s",
			o.Bucket, o.Renew, o.TTL, need, o.TTL-need)
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
	Sent time.Time
	// AcquiredAt is when the Create was sent.
	AcquiredAt time.Time
}

// StepDownAt is when the holder must have stopped acting: its last
// successful write's send time plus the TTL, less the stop hook's timeout
// and the margin.
func (l *Lease) StepDownAt(o Options) time.Time {
	o.defaults()
	return l.Sent.Add(o.TTL - o.StopTimeout - o.Margin)
}

// Bucket is a lease bucket.
type Bucket struct {
	kv         jetstream.KeyValue
	opts       Options
	generation atomic.Uint64
}

// Open validates o, then creates the bucket or binds to it (raising its
// replicas when asked for more, setting its TTL to o.TTL), retrying while
// a forming cluster cannot take it yet (no meta leader, too few peers,
// timeouts, no responders) until ctx ends, and logging what it waits for.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Bucket, error) {
	o.defaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	b := &Bucket{opts: o}
	what := "lease bucket " + o.Bucket
	state := func() string { return "a majority of the cluster's nodes must run" }
	err := bus.RetryForming(ctx, o.Logger, state, what, func(ctx context.Context) error {
		kv, err := js.KeyValue(ctx, o.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			gen := uint64(0)
			if o.Floor > 0 {
				gen = o.Floor>>GenerationShift + 1
			}
			kv, err = js.CreateKeyValue(ctx, o.config(gen, o.Replicas))
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, o.Bucket) // another host created it meanwhile
			} else if err == nil {
				o.Logger.Info("lease bucket created", slog.String("bucket", o.Bucket), slog.Uint64("generation", gen),
					slog.Uint64("floor", o.Floor), slog.Duration("ttl", o.TTL), slog.Int("replicas", o.Replicas))
			}
		}
		if err != nil {
			return err
		}
		st, err := bucketStatus(ctx, kv)
		if err != nil {
			return err
		}
		cfg := st.Config()
		gen := generationOf(cfg)
		// An existing bucket keeps its generation, unless its next epoch
		// would not be above the floor: then it was re-created by a host
		// that had not applied the highest epoch, and takes a generation
		// above the floor (epochs only grow).
		bump := o.Floor > 0 && gen<<GenerationShift+st.StreamInfo().State.LastSeq+1 <= o.Floor
		if bump {
			o.Logger.Warn("lease bucket's epochs are behind the highest epoch applied: raising its generation", slog.String("bucket", o.Bucket),
				slog.Uint64("generation", gen), slog.Uint64("last_revision", st.StreamInfo().State.LastSeq), slog.Uint64("floor", o.Floor),
				slog.Uint64("new_generation", o.Floor>>GenerationShift+1))
			gen = o.Floor>>GenerationShift + 1
		}
		if bump || cfg.Replicas < o.Replicas || cfg.TTL != o.TTL {
			if cfg.TTL != o.TTL {
				o.Logger.Warn("lease bucket's TTL changed: every host must use the same TTL", slog.String("bucket", o.Bucket),
					slog.Duration("was", cfg.TTL), slog.Duration("now", o.TTL))
			}
			if kv, err = js.UpdateKeyValue(ctx, o.config(gen, max(cfg.Replicas, o.Replicas))); err != nil {
				return err
			}
		}
		b.kv = kv
		b.generation.Store(gen)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (o Options) config(generation uint64, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "Lifeboat leases: a key is held while its holder renews it within the TTL",
		History:     1,
		TTL:         o.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Metadata:    map[string]string{MetaGeneration: strconv.FormatUint(generation, 10)},
	}
}

func bucketStatus(ctx context.Context, kv jetstream.KeyValue) (*jetstream.KeyValueBucketStatus, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	s, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, fmt.Errorf("bucket status of type %T", st)
	}
	return s, nil
}

func generationOf(cfg jetstream.KeyValueConfig) uint64 {
	g, _ := strconv.ParseUint(cfg.Metadata[MetaGeneration], 10, 64) // absent: 0
	return g
}

// Options are the bucket's options, defaults filled in.
func (b *Bucket) Options() Options { return b.opts }

// Generation is the bucket's generation, as last read.
func (b *Bucket) Generation() uint64 { return b.generation.Load() }

// epoch is the epoch of a key created at revision.
func (b *Bucket) epoch(revision uint64) uint64 {
	return b.generation.Load()<<GenerationShift + revision
}

func (b *Bucket) name(key string) string { return b.opts.Bucket + "/" + key }

// Acquire takes the lease key for holder; ErrHeld (naming the holder) when
// someone holds it.
func (b *Bucket) Acquire(ctx context.Context, key, holder string) (*Lease, error) {
	sent := b.opts.Now()
	first := Record{Holder: holder, AcquiredAt: sent.UTC(), RenewedAt: sent.UTC()}
	rev, err := b.kv.Create(ctx, key, b.value(first))
	if err != nil {
		// A Create may land although its reply is lost: the key is ours
		// if it carries this very attempt.
		rec, r, gerr := b.Get(ctx, key)
		switch {
		case gerr == nil && rec.Holder == holder && rec.AcquiredAt.Equal(first.AcquiredAt):
			rev = r
		case errors.Is(err, jetstream.ErrKeyExists) && gerr == nil:
			return nil, fmt.Errorf("%w: %s holds %s (epoch %d)", ErrHeld, rec.Holder, b.name(key), rec.Epoch)
		case errors.Is(err, jetstream.ErrKeyExists):
			return nil, fmt.Errorf("%w: %s", ErrHeld, b.name(key))
		default:
			return nil, fmt.Errorf("lease %s: acquire: %w", b.name(key), err)
		}
	}
	// The epoch needs the generation of the bucket the key was created
	// in, read again in case the bucket was re-created since Open.
	if st, serr := bucketStatus(ctx, b.kv); serr == nil {
		b.generation.Store(generationOf(st.Config()))
	} else {
		b.opts.Logger.Warn("lease bucket's generation not read again; using the one read before", slog.String("lease", b.name(key)),
			slog.Uint64("generation", b.generation.Load()), slog.String("error", serr.Error()))
	}
	l := &Lease{Key: key, Holder: holder, Epoch: b.epoch(rev), Revision: rev, Sent: sent, AcquiredAt: first.AcquiredAt}
	// The epoch was not known before the Create: the value is written
	// again at once with it. Until then readers derive it from the
	// revision (Get). A transient failure leaves that to the next renewal.
	if err := b.Renew(ctx, l); errors.Is(err, ErrLost) {
		return nil, err
	} else if err != nil {
		b.opts.Logger.Warn("lease taken, epoch not yet written; the next renewal writes it", slog.String("lease", b.name(key)),
			slog.Uint64("epoch", l.Epoch), slog.String("error", err.Error()))
	}
	return l, nil
}

// Renew writes the lease again on its revision, keeping it alive, and
// moves l.Revision and l.Sent on; ErrLost when the revision is stale or the
// key is gone. A renewal whose reply was lost but which landed is found
// (the key carries this holder's tenure and the renewal's send time) and
// taken as done.
func (b *Bucket) Renew(ctx context.Context, l *Lease) error {
	for range 2 {
		sent := b.opts.Now()
		rev, err := b.kv.Update(ctx, l.Key, b.value(Record{Holder: l.Holder, Epoch: l.Epoch, AcquiredAt: l.AcquiredAt, RenewedAt: sent.UTC()}), l.Revision)
		if err == nil {
			l.Revision, l.Sent = rev, sent
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("lease %s: renew: %w", b.name(l.Key), err)
		}
		rec, r, gerr := b.Get(ctx, l.Key)
		if gerr != nil && !errors.Is(gerr, ErrFree) {
			return fmt.Errorf("lease %s: renew: %w (then reading it: %v)", b.name(l.Key), err, gerr)
		}
		if gerr != nil || rec.Holder != l.Holder || rec.Epoch != l.Epoch || !rec.AcquiredAt.Equal(l.AcquiredAt) || r < l.Revision {
			return fmt.Errorf("%w: %s (epoch %d, revision %d): %v", ErrLost, b.name(l.Key), l.Epoch, l.Revision, err)
		}
		// An earlier renewal of ours landed unanswered: it is the last
		// successful one, sent at the time it carries.
		l.Revision, l.Sent = r, rec.RenewedAt
	}
	return fmt.Errorf("lease %s: renew: the revision keeps moving", b.name(l.Key))
}

// Release gives the lease up at once, if it is still ours, so that another
// host can take it without waiting for it to expire; ErrLost when it is
// not ours anymore.
func (b *Bucket) Release(ctx context.Context, l *Lease) error {
	err := b.kv.Delete(ctx, l.Key, jetstream.LastRevision(l.Revision))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %s (epoch %d): %v", ErrLost, b.name(l.Key), l.Epoch, err)
	}
	if err != nil {
		return fmt.Errorf("lease %s: release: %w", b.name(l.Key), err)
	}
	return nil
}

// Get reads the lease key: its record and revision; ErrFree when nobody
// holds it.
func (b *Bucket) Get(ctx context.Context, key string) (Record, uint64, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Record{}, 0, fmt.Errorf("%w: %s", ErrFree, b.name(key))
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("lease %s: %w", b.name(key), err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, 0, fmt.Errorf("lease %s: unreadable value: %w", b.name(key), err)
	}
	if r.Epoch == 0 {
		r.Epoch = b.epoch(e.Revision()) // just created, not yet written again
	}
	return r, e.Revision(), nil
}

// List reads every held lease of the bucket, by key (for `lifeboat
// status`).
func (b *Bucket) List(ctx context.Context) (map[string]Record, error) {
	kl, err := b.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", b.opts.Bucket, err)
	}
	defer kl.Stop()
	out := map[string]Record{}
	for k := range kl.Keys() {
		r, _, err := b.Get(ctx, k)
		if errors.Is(err, ErrFree) {
			continue // expired or released meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lease %s: %w", b.opts.Bucket, err)
	}
	return out, nil
}

func (b *Bucket) value(r Record) []byte {
	v, _ := json.Marshal(r) // a struct of strings, numbers and times
	return v
}
