package instances

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/lease"
)

// The active host of an instance is whoever holds its lease (DESIGN §1
// "Instances"): a key named after the instance in the bucket
// lifeboat-instances, held by the lifeboat process of one of the
// instance's hosts. Its epoch is fixed for the tenure and carried by every
// side effect (a backup's manifest and BackupTaken).
//
// A free lease is taken only by a host whose store carries the highest
// epoch the cluster has taken for the instance, so that after a whole-site
// restart an old active cannot come back on a diverged store: the preferred
// active takes it when its store does, another host only when its own
// store carries that epoch and the preferred active's does not. A host
// records the epoch its store carries in its data directory
// (instances/<name>.epoch) when it takes the lease; the highest epoch taken
// is kept in the bucket lifeboat-instance-epochs, which never expires.
// (What the stop, start and health hooks do with a tenure, and failover,
// come with the failover issue.)

// LeaseBucket and EpochBucket are the instances' KV buckets.
const (
	LeaseBucket = "lifeboat-instances"
	EpochBucket = "lifeboat-instance-epochs"
)

// Leases holds the leases of the instances that list this host.
type Leases struct {
	cfg    Config
	host   string
	data   string
	log    *slog.Logger
	bucket *lease.Bucket
	epochs jetstream.KeyValue

	mu      sync.Mutex
	held    map[string]uint64 // instance → epoch, while this host holds it
	refused map[string]int    // instance → free leases declined
}

// LeaseOptions shape the instances' leases.
type LeaseOptions struct {
	// TTL of a lease (default 20 s).
	TTL time.Duration
	// Margin, when set, replaces lease's default clock-skew margin.
	Margin time.Duration
	// ElectionAllowance, when set, replaces lease's default (tests).
	ElectionAllowance time.Duration
	Replicas          int
	Logger            *slog.Logger
}

// OpenLeases opens the buckets for cfg's instances as seen from host,
// whose data directory is data.
func OpenLeases(ctx context.Context, js jetstream.JetStream, cfg Config, host, data string, o LeaseOptions) (*Leases, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	lo := lease.NewOptions(LeaseBucket)
	if o.TTL > 0 {
		lo.TTL, lo.Renew = o.TTL, o.TTL/10
	}
	if o.ElectionAllowance > 0 {
		lo.ElectionAllowance = o.ElectionAllowance
	}
	if o.Margin > 0 {
		lo.Margin = o.Margin
	}
	lo.Replicas, lo.Logger = max(o.Replicas, 1), o.Logger
	if err := lo.Validate(); err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	l := &Leases{cfg: cfg, host: host, data: data, log: o.Logger, held: map[string]uint64{}, refused: map[string]int{}}
	err := bus.RetryForming(ctx, o.Logger, func() string { return "a majority of the cluster's nodes must run" }, "bucket "+EpochBucket, func(ctx context.Context) error {
		var err error
		l.epochs, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      EpochBucket,
			Description: "Lifeboat: the highest lease epoch taken for each instance",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    lo.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	// A re-created lease bucket starts above every epoch taken before.
	for _, name := range cfg.Names() {
		if e, _, err := l.highest(ctx, name); err == nil && e > lo.Floor {
			lo.Floor = e
		}
	}
	if l.bucket, err = lease.Open(ctx, js, lo); err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	return l, nil
}

// Run campaigns for the lease of every instance that lists this host until
// ctx ends.
func (l *Leases) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(l.cfg))
	for _, name := range l.cfg.OnHost(l.host) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.bucket.Hold(ctx, name, l.host, func() bool { return l.may(ctx, name) }, func(hctx context.Context, ls *lease.Lease) {
				if err := l.taken(ctx, name, ls.Epoch); err != nil {
					l.log.Error("instance lease taken but its epoch not recorded; giving it up", slog.String("instance", name), slog.String("error", err.Error()))
					return
				}
				l.mu.Lock()
				l.held[name] = ls.Epoch
				l.mu.Unlock()
				l.log.Info("this host is the instance's active host", slog.String("instance", name), slog.Uint64("epoch", ls.Epoch))
				<-hctx.Done()
				l.mu.Lock()
				delete(l.held, name)
				l.mu.Unlock()
				l.log.Info("this host is no longer the instance's active host", slog.String("instance", name), slog.Uint64("epoch", ls.Epoch))
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("instance %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Holds returns this host's epoch while it holds instance's lease.
func (l *Leases) Holds(instance string) (epoch uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch, ok = l.held[instance]
	return epoch, ok
}

// Holder is who holds instance's lease, as the bucket says.
func (l *Leases) Holder(ctx context.Context, instance string) (lease.Record, error) {
	r, _, err := l.bucket.Get(ctx, instance)
	return r, err
}

// may says whether this host may take instance's free lease: its store
// carries the highest epoch taken, and it is the preferred active or the
// preferred active's store does not carry it.
func (l *Leases) may(ctx context.Context, instance string) bool {
	highest, _, err := l.highest(ctx, instance)
	if err != nil {
		l.log.Warn("cannot read the instance's highest epoch; not taking its lease", slog.String("instance", instance), slog.String("error", err.Error()))
		return false
	}
	mine := l.storeEpoch(instance)
	ok := mine >= highest
	if ok && l.cfg[instance].Active != l.host {
		// Another host may take it only when its store carries the
		// highest epoch taken (then the preferred active's cannot).
		ok = highest > 0
	}
	if !ok {
		l.mu.Lock()
		l.refused[instance]++
		l.mu.Unlock()
	}
	return ok
}

// Declined is how many times this host declined to take instance's free
// lease because its store does not carry the highest epoch taken.
func (l *Leases) Declined(instance string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused[instance]
}

// highest is the highest epoch taken for instance, and its revision.
func (l *Leases) highest(ctx context.Context, instance string) (uint64, uint64, error) {
	e, err := l.epochs.Get(ctx, instance)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	return n, e.Revision(), err
}

// taken records a new tenure: the cluster's highest epoch, then this
// host's store's.
func (l *Leases) taken(ctx context.Context, instance string, epoch uint64) error {
	for {
		cur, rev, err := l.highest(ctx, instance)
		if err != nil {
			return err
		}
		if cur >= epoch {
			break
		}
		v := []byte(strconv.FormatUint(epoch, 10))
		if rev == 0 {
			_, err = l.epochs.Create(ctx, instance, v)
		} else {
			_, err = l.epochs.Update(ctx, instance, v, rev)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	path := l.epochPath(instance)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strconv.FormatUint(epoch, 10)+"\n"), 0o644)
}

// storeEpoch is the epoch this host's store of instance carries (0 when it
// never held the lease).
func (l *Leases) storeEpoch(instance string) uint64 {
	b, err := os.ReadFile(l.epochPath(instance))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (l *Leases) epochPath(instance string) string {
	return filepath.Join(l.data, "instances", instance+".epoch")
}
