package lease_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/testtool"
)

// holders tracks who holds one key, from inside Hold's on.
type holders struct {
	mu      sync.Mutex
	current map[string]uint64 // host → epoch, while its on runs
	overlap string
	ended   []ended
}

type ended struct {
	host  string
	epoch uint64
	at    time.Time
	cause error
}

func newHolders() *holders { return &holders{current: map[string]uint64{}} }

func (h *holders) on(host string) func(ctx context.Context, l *lease.Lease) {
	return func(ctx context.Context, l *lease.Lease) {
		h.mu.Lock()
		for other, e := range h.current {
			h.overlap = fmt.Sprintf("%s took epoch %d while %s held epoch %d", host, l.Epoch, other, e)
		}
		h.current[host] = l.Epoch
		h.mu.Unlock()
		<-ctx.Done()
		h.mu.Lock()
		delete(h.current, host)
		h.ended = append(h.ended, ended{host, l.Epoch, time.Now(), context.Cause(ctx)})
		h.mu.Unlock()
	}
}

// holder is the one current holder and its epoch.
func (h *holders) holder() (string, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overlap != "" {
		return "", 0, errors.New(h.overlap)
	}
	for host, e := range h.current {
		return host, e, nil
	}
	return "", 0, errors.New("nobody holds")
}

func (h *holders) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overlap != "" {
		t.Fatal(h.overlap)
	}
}

// campaigns runs Hold for hosts, each on its own Bucket, until the test
// ends or its cancel is called.
type campaigns struct {
	cancel map[string]context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

func campaign(t *testing.T, js map[string]jetstream.JetStream, o lease.Options, key string, h *holders) *campaigns {
	c := &campaigns{cancel: map[string]context.CancelFunc{}, errs: make(chan error, len(js))}
	for host, j := range js {
		bk, err := lease.Open(context.Background(), j, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.cancel[host] = cancel
		c.wg.Go(func() { c.errs <- bk.Hold(ctx, key, host, nil, h.on(host)) })
	}
	t.Cleanup(c.stop)
	return c
}

func (c *campaigns) stop() {
	for _, cancel := range c.cancel {
		cancel()
	}
	c.wg.Wait()
}

func TestHoldOneAtATimeHandsOverOnRelease(t *testing.T) {
	t.Parallel()
	_, b := bustest.Embedded(t)
	o := short(t, "t-hold")
	o.TTL = time.Minute // a handover within the test's waits is a release, not an expiry
	h := newHolders()
	c := campaign(t, map[string]jetstream.JetStream{"h1": b.JS, "h2": b.JS}, o, "k", h)
	var first string
	var epoch uint64
	testtool.WaitFor(t, 10*time.Second, func() (err error) { first, epoch, err = h.holder(); return err })
	// A clean stop releases: the other takes over without waiting for the
	// TTL, and Hold returns.
	start := time.Now()
	c.cancel[first]()
	if err := <-c.errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("Hold returned %v, want context.Canceled", err)
	}
	var second string
	var epoch2 uint64
	testtool.WaitFor(t, 10*time.Second, func() error {
		var err error
		if second, epoch2, err = h.holder(); err == nil && second == first {
			return fmt.Errorf("%s still holds", first)
		}
		return err
	})
	t.Logf("handover after release: %v", time.Since(start).Round(time.Millisecond))
	if epoch2 <= epoch {
		t.Fatalf("epoch %d after the handover, want above %d", epoch2, epoch)
	}
	h.check(t)

	// A may that refuses keeps a host from taking a free lease.
	bk, err := lease.Open(context.Background(), b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := 0
	ctx, cancel := context.WithCancel(context.Background())
	refused := make(chan error)
	go func() {
		refused <- bk.Hold(ctx, "other", "h3", func() bool { mu.Lock(); defer mu.Unlock(); asked++; return false },
			func(ctx context.Context, l *lease.Lease) { t.Error("h3 took a lease it may not take") })
	}()
	testtool.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if asked < 3 {
			return fmt.Errorf("h3 asked %d times, want 3", asked)
		}
		return nil
	})
	cancel()
	<-refused
	if _, _, err := bk.Get(context.Background(), "other"); !errors.Is(err, lease.ErrFree) {
		t.Fatalf("the lease h3 may not take: %v, want ErrFree", err)
	}
}

func TestHoldStepsDownBeforeTheLeaseExpiresWhenCutOff(t *testing.T) {
	t.Parallel()
	_, b := bustest.Embedded(t)
	o := short(t, "t-cut")
	o.TTL, o.Margin = 3*time.Second, 500*time.Millisecond
	// h1 holds through its own connection, which the test closes: its
	// renewals fail, and it must stop acting before its lease can expire.
	// h2 campaigns meanwhile and takes over once it has.
	nc := bustest.Connect(t, 1, b.ClientURL())
	h := newHolders()
	c := campaign(t, map[string]jetstream.JetStream{"h1": nc.JS}, o, "k", h)
	testtool.WaitFor(t, 10*time.Second, func() error {
		if host, _, err := h.holder(); err != nil || host != "h1" {
			return fmt.Errorf("holder %q (%v), want h1", host, err)
		}
		return nil
	})
	campaign(t, map[string]jetstream.JetStream{"h2": b.JS}, o, "k", h)
	bk, err := lease.Open(context.Background(), b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	nc.NC.Close()
	// What h1 wrote last, read at once, before the key can expire.
	last, _, err := bk.Get(context.Background(), "k")
	if err != nil || last.Holder != "h1" {
		t.Fatalf("the lease after the cut: %+v, %v; want h1's", last, err)
	}
	var h2 uint64
	testtool.WaitFor(t, 20*time.Second, func() error {
		host, e, err := h.holder()
		if err != nil || host != "h2" {
			return fmt.Errorf("holder %q (%v), want h2", host, err)
		}
		h2 = e
		return nil
	})
	c.stop()
	h.check(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.IndexFunc(h.ended, func(e ended) bool { return e.host == "h1" })
	if i < 0 {
		t.Fatal("h1's tenure did not end")
	}
	e := h.ended[i]
	if !errors.Is(e.cause, lease.ErrStepDown) {
		t.Fatalf("h1's tenure ended by %v, want ErrStepDown", e.cause)
	}
	// The key expires TTL after the last renewal reached the stream, which
	// is after h1 sent it: stopping before sent + TTL is stopping in time.
	if expiry := last.RenewedAt.Add(o.TTL); !e.at.Before(expiry) {
		t.Fatalf("h1 stopped at %v, not before its lease could expire (%v: last renewal sent %v + TTL %v)", e.at, expiry, last.RenewedAt, o.TTL)
	}
	if h2 <= e.epoch {
		t.Fatalf("h2's epoch %d, want above h1's %d", h2, e.epoch)
	}
}

func TestHoldKeepsTheLeaseWhenTheBucketsStreamLeaderDies(t *testing.T) {
	t.Parallel()
	c := bustest.StartCluster(t)
	b := bustest.Connect(t, 3, c.URLs()...)
	ctx := context.Background()
	o := lease.NewOptions("t-r3") // the real TTL: an election must fit in it
	o.Logger = testLogger(t)
	o.Renew = 250 * time.Millisecond // some renewals fall in the election and the reconnection
	// A bucket made with one replica is raised to three when asked.
	o.Replicas = 1
	if _, err := lease.Open(ctx, b.JS, o); err != nil {
		t.Fatal(err)
	}
	o.Replicas = 3
	if _, err := lease.Open(ctx, b.JS, o); err != nil {
		t.Fatal(err)
	}
	o.Replicas = 1 // and not lowered again
	if _, err := lease.Open(ctx, b.JS, o); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, "KV_t-r3")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("bucket replicas %d, want 3", r)
	}

	var leader string
	testtool.WaitFor(t, 30*time.Second, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("stream cluster %+v, want a leader and two replicas", info.Cluster)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("replica %s of KV_t-r3 not current", r.Name)
			}
		}
		leader = info.Cluster.Leader
		return nil
	})
	i := slices.IndexFunc(c.Servers, func(s *server.Server) bool { return s.Name() == leader })
	if i < 0 {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	// h1 is connected through the leader's node too: stopping it cuts h1
	// off until its client reconnects to another node, and its renewals
	// fail until a new leader is elected.
	hb := bustest.Connect(t, 3, c.Servers[i].ClientURL())
	h := newHolders()
	campaign(t, map[string]jetstream.JetStream{"h1": hb.JS}, o, "k", h)
	var epoch uint64
	testtool.WaitFor(t, 30*time.Second, func() (err error) { _, epoch, err = h.holder(); return err })
	bk, err := lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	_, before, err := bk.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(i)
	t.Logf("stopped %s, the leader of KV_t-r3 and h1's node", leader)
	// Renewals resume once a new leader is elected: the revision moves on
	// and h1 holds, in the same tenure or, had it stepped down, a later one.
	testtool.WaitFor(t, 60*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		rec, rev, err := bk.Get(rctx, "k")
		if err != nil {
			return err
		}
		if rev <= before+2 {
			return fmt.Errorf("revision %d, not renewed twice since %d", rev, before)
		}
		if host, e, err := h.holder(); err != nil || host != "h1" || rec.Holder != "h1" || rec.Epoch != e {
			return fmt.Errorf("h1 holds epoch %d (%v); the key says %s at %d", e, err, rec.Holder, rec.Epoch)
		}
		return nil
	})
	_, now, _ := h.holder()
	t.Logf("epoch %d before the leader died, %d after (the same: the tenure was kept)", epoch, now)
	h.check(t)
}
