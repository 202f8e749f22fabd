package lease_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/testtool"
)

// short is a lease short enough for tests: it outlasts no real election,
// so its allowance is made small on purpose.
func short(bucket string) lease.Options {
	o := lease.NewOptions(bucket)
	o.TTL, o.Renew, o.Margin, o.ElectionAllowance = 2*time.Second, 200*time.Millisecond, 200*time.Millisecond, 500*time.Millisecond
	return o
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(o *lease.Options)
		want string // "" for valid
	}{
		{"defaults", func(o *lease.Options) {}, ""},
		{"too short for an election", func(o *lease.Options) { o.TTL = 5 * time.Second },
			"TTL 5s is too short: it must outlast a stream leader election (7.5s) + the stop hook (0s) + the clock-skew margin (1s) = 8.5s"},
		{"too short with a stop hook", func(o *lease.Options) { o.StopTimeout = 15 * time.Second }, "= 23.5s"},
		{"renewing too seldom", func(o *lease.Options) { o.Renew = 15 * time.Second }, "leaves no time to renew"},
		{"no bucket", func(o *lease.Options) { o.Bucket = "" }, "no bucket name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := lease.NewOptions("b")
			c.mod(&o)
			err := o.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestAcquireRenewExpireAndEpochs(t *testing.T) {
	_, b := bustest.Embedded(t)
	ctx := context.Background()
	bk, err := lease.Open(ctx, b.JS, short("t-lease"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := bk.Acquire(ctx, "k", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch != 1 {
		t.Fatalf("first epoch %d, want 1 (generation 0, revision 1)", l.Epoch)
	}
	if _, err := bk.Acquire(ctx, "k", "h2"); !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), "h1 holds") {
		t.Fatalf("second acquire: %v, want ErrHeld naming h1", err)
	}
	if err := bk.Renew(ctx, l); err != nil {
		t.Fatal(err)
	}
	rec, _, err := bk.Get(ctx, "k")
	if err != nil || rec.Holder != "h1" || rec.Epoch != 1 {
		t.Fatalf("Get = %+v, %v; want h1 at epoch 1", rec, err)
	}
	stale := *l
	stale.Revision--
	if err := bk.Renew(ctx, &stale); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renewal on a stale revision: %v, want ErrLost", err)
	}
	// Left unrenewed, the key expires and the next holder's epoch is higher.
	var l2 *lease.Lease
	testtool.WaitFor(t, 10*time.Second, func() error {
		var err error
		l2, err = bk.Acquire(ctx, "k", "h2")
		return err
	})
	if l2.Epoch <= l.Epoch {
		t.Fatalf("epoch after expiry %d, want above %d", l2.Epoch, l.Epoch)
	}
	if err := bk.Renew(ctx, l); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("the expired holder's renewal: %v, want ErrLost", err)
	}

	// A re-created bucket takes a generation above the floor: epochs never
	// go backwards.
	if err := b.JS.DeleteKeyValue(ctx, "t-lease"); err != nil {
		t.Fatal(err)
	}
	o := short("t-lease")
	o.Floor = l2.Epoch
	bk, err = lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	l3, err := bk.Acquire(ctx, "k", "h3")
	if err != nil {
		t.Fatal(err)
	}
	if l3.Epoch <= l2.Epoch || l3.Epoch != 1<<40+1 {
		t.Fatalf("epoch in the re-created bucket %d, want 2^40+1, above %d", l3.Epoch, l2.Epoch)
	}
	// Binding to the existing bucket keeps its generation.
	bk2, err := lease.Open(ctx, b.JS, short("t-lease"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bk2.Release(ctx, l3); err != nil {
		t.Fatal(err)
	}
	l4, err := bk2.Acquire(ctx, "k", "h1")
	if err != nil || l4.Epoch <= l3.Epoch {
		t.Fatalf("after release: %+v, %v; want an epoch above %d", l4, err, l3.Epoch)
	}
	all, err := bk2.List(ctx)
	if err != nil || len(all) != 1 || all["k"].Holder != "h1" {
		t.Fatalf("List = %v, %v", all, err)
	}
}

// holders runs Hold for several hosts on one key and tracks who holds.
type holders struct {
	mu      sync.Mutex
	current map[string]uint64 // host → epoch, while on runs
	overlap bool
}

func (h *holders) on(host string) func(ctx context.Context, l *lease.Lease) {
	return func(ctx context.Context, l *lease.Lease) {
		h.mu.Lock()
		if len(h.current) > 0 {
			h.overlap = true
		}
		h.current[host] = l.Epoch
		h.mu.Unlock()
		<-ctx.Done()
		h.mu.Lock()
		delete(h.current, host)
		h.mu.Unlock()
	}
}

func (h *holders) holder() (string, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overlap {
		return "", 0, errors.New("two holders at once")
	}
	for host, e := range h.current {
		return host, e, nil
	}
	return "", 0, errors.New("nobody holds")
}

func TestHoldHandsOverOnReleaseAndOnSilence(t *testing.T) {
	_, b := bustest.Embedded(t)
	ctx := context.Background()
	o := short("t-hold")
	hs := &holders{current: map[string]uint64{}}
	cancels := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	for _, host := range []string{"h1", "h2"} {
		bk, err := lease.Open(ctx, b.JS, o)
		if err != nil {
			t.Fatal(err)
		}
		hctx, cancel := context.WithCancel(ctx)
		cancels[host] = cancel
		wg.Add(1)
		go func() { defer wg.Done(); _ = bk.Hold(hctx, "k", host, nil, hs.on(host)) }()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()
	var first string
	var epoch uint64
	testtool.WaitFor(t, 10*time.Second, func() (err error) { first, epoch, err = hs.holder(); return err })
	// A clean stop releases: the other takes over without waiting for the
	// TTL.
	start := time.Now()
	cancels[first]()
	var second string
	var epoch2 uint64
	testtool.WaitFor(t, 10*time.Second, func() error {
		var err error
		if second, epoch2, err = hs.holder(); err == nil && second == first {
			return fmt.Errorf("%s still holds", first)
		}
		return err
	})
	if epoch2 <= epoch {
		t.Fatalf("epoch %d after the handover, want above %d", epoch2, epoch)
	}
	t.Logf("handover after release: %v", time.Since(start).Round(time.Millisecond))
	// A may that refuses keeps a host from taking a free lease.
	bk, err := lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan struct{})
	var mu sync.Mutex
	asked := 0
	mctx, mcancel := context.WithCancel(ctx)
	go func() {
		defer close(refused)
		_ = bk.Hold(mctx, "other", "h3", func() bool { mu.Lock(); defer mu.Unlock(); asked++; return false },
			func(ctx context.Context, l *lease.Lease) { t.Error("h3 took a lease it may not take") })
	}()
	testtool.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if asked < 3 {
			return fmt.Errorf("h3 asked %d times", asked)
		}
		return nil
	})
	mcancel()
	<-refused
	if _, _, err := bk.Get(ctx, "other"); !errors.Is(err, lease.ErrFree) {
		t.Fatalf("the lease h3 may not take: %v, want ErrFree", err)
	}
}

func TestAHolderCutOffStepsDownBeforeTheLeaseExpires(t *testing.T) {
	_, b := bustest.Embedded(t)
	ctx := context.Background()
	o := short("t-cut")
	// h1 holds through its own connection, which the test closes: its
	// renewals fail, it must step down by the deadline.
	nc := bustest.Connect(t, 1, b.ClientURL())
	bk1, err := lease.Open(ctx, nc.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	stepped := make(chan time.Time, 1)
	var sent time.Time
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = bk1.Hold(hctx, "k", "h1", nil, func(ctx context.Context, l *lease.Lease) {
			sent = l.Sent
			<-ctx.Done()
			select {
			case stepped <- time.Now():
			default:
			}
		})
	}()
	testtool.WaitFor(t, 10*time.Second, func() error {
		if _, _, err := bk1.Get(ctx, "k"); err != nil {
			return err
		}
		return nil
	})
	nc.NC.Close()
	var at time.Time
	select {
	case at = <-stepped:
	case <-time.After(10 * time.Second):
		t.Fatal("h1 did not step down")
	}
	// It stepped down before its lease could expire: within TTL - margin
	// of its last successful renewal (read from the store it can no
	// longer reach, so bounded by the last value on record).
	bk2, err := lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	var l2 *lease.Lease
	testtool.WaitFor(t, 10*time.Second, func() error { l2, err = bk2.Acquire(ctx, "k", "h2"); return err })
	if !at.Before(time.Now()) || sent.IsZero() {
		t.Fatalf("step-down at %v", at)
	}
	if at.After(l2.Sent) {
		t.Fatalf("h1 stepped down at %v, after h2 took the lease at %v", at, l2.Sent)
	}
}

func TestRenewalsResumeAfterTheBucketsStreamLeaderDies(t *testing.T) {
	c := bustest.StartCluster(t)
	b := bustest.Connect(t, 3, c.URLs()...)
	ctx := context.Background()
	o := lease.NewOptions("t-r3") // the real TTL: an election must fit
	o.Replicas = 3
	bk, err := lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := &holders{current: map[string]uint64{}}
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = bk.Hold(hctx, "k", "h1", nil, hs.on("h1")) }()
	defer func() { cancel(); <-done }()
	var epoch uint64
	testtool.WaitFor(t, 30*time.Second, func() (err error) { _, epoch, err = hs.holder(); return err })
	s, err := b.JS.Stream(ctx, "KV_t-r3")
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	i := slices.IndexFunc(c.Servers, func(s *server.Server) bool { return s.Name() == leader })
	if i < 0 {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	_, revBefore, _ := bk.Get(ctx, "k")
	c.Stop(i)
	// Renewals resume once a new leader is elected: the revision moves on,
	// and h1 still holds the same tenure.
	testtool.WaitFor(t, 30*time.Second, func() error {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		rec, rev, err := bk.Get(rctx, "k")
		if err != nil {
			return err
		}
		if rev <= revBefore+1 {
			return fmt.Errorf("revision %d, not renewed since %d", rev, revBefore)
		}
		if rec.Holder != "h1" || rec.Epoch != epoch {
			return fmt.Errorf("held by %s at epoch %d, want h1 at %d", rec.Holder, rec.Epoch, epoch)
		}
		return nil
	})
	if host, e, err := hs.holder(); err != nil || host != "h1" || e != epoch {
		t.Fatalf("holder %s at %d (%v), want h1 kept its tenure %d", host, e, err, epoch)
	}
}
