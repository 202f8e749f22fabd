package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/testtool"
)

// short is a lease short enough for tests: it outlasts no real election,
// so its election allowance is lowered on purpose.
func short(t *testing.T, bucket string) lease.Options {
	o := lease.NewOptions(bucket)
	o.TTL, o.Renew, o.Margin, o.ElectionAllowance = 2*time.Second, 200*time.Millisecond, 200*time.Millisecond, 500*time.Millisecond
	o.Logger = testLogger(t)
	return o
}

// testLogger writes to the test's output, shown with -v or on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		opts lease.Options
		want string // "" for valid
	}{
		{"defaults", lease.NewOptions("b"), ""},
		{"zero fields take the defaults", lease.Options{Bucket: "b", Margin: time.Second}, ""},
		{"a stop hook that fits", func() lease.Options { o := lease.NewOptions("b"); o.StopTimeout = 5 * time.Second; return o }(), ""},
		{"too short for an election", func() lease.Options { o := lease.NewOptions("b"); o.TTL = 5 * time.Second; return o }(),
			"lease b: TTL 5s is too short: it must outlast a stream leader election (7.5s) + the stop hook (0s) + the clock-skew margin (1s) = 8.5s"},
		{"too short with a stop hook", func() lease.Options { o := lease.NewOptions("b"); o.StopTimeout = 15 * time.Second; return o }(),
			"TTL 20s is too short: it must outlast a stream leader election (7.5s) + the stop hook (15s) + the clock-skew margin (1s) = 23.5s"},
		{"renewing too seldom", func() lease.Options { o := lease.NewOptions("b"); o.Renew = 15 * time.Second; return o }(),
			"renewing every 15s leaves no time for a stream leader election before the step-down: it must be under TTL 20s - 8.5s = 11.5s"},
		{"the default renewal too seldom for a TTL just long enough", lease.Options{Bucket: "b", TTL: 9 * time.Second, Margin: time.Second},
			"renewing every 900ms leaves no time"},
		{"a negative margin", func() lease.Options { o := lease.NewOptions("b"); o.Margin = -time.Second; return o }(), "negative margin"},
		{"no bucket", lease.NewOptions(""), "no bucket name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestStepDownAt(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		mod  func(o *lease.Options)
		want time.Duration // after sent
	}{
		{"defaults: TTL - margin", func(o *lease.Options) {}, 19 * time.Second},
		{"with a stop hook", func(o *lease.Options) { o.StopTimeout = 5 * time.Second }, 14 * time.Second},
		{"zero TTL is the default", func(o *lease.Options) { o.TTL = 0; o.Margin = 0 }, 20 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := lease.NewOptions("b")
			c.mod(&o)
			l := &lease.Lease{Sent: sent}
			if got := l.StepDownAt(o).Sub(sent); got != c.want {
				t.Fatalf("step-down %s after the send, want %s", got, c.want)
			}
		})
	}
}

func TestAcquireRenewExpireAndEpochs(t *testing.T) {
	t.Parallel()
	_, b := bustest.Embedded(t)
	ctx := context.Background()
	bk, err := lease.Open(ctx, b.JS, short(t, "t-lease"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := bk.Acquire(ctx, "k", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch != 1 || l.Revision != 2 {
		t.Fatalf("first tenure: epoch %d at revision %d, want epoch 1 (generation 0, Create's revision 1) rewritten at revision 2", l.Epoch, l.Revision)
	}
	// The value is the JSON record, with the epoch written in.
	kv, err := b.JS.KeyValue(ctx, "t-lease")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(raw)); !slices.Equal(keys, []string{"acquired_at", "epoch", "holder", "renewed_at"}) || raw["holder"] != "h1" || raw["epoch"] != 1.0 {
		t.Fatalf("value %s", e.Value())
	}
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != 2*time.Second || st.History() != 1 {
		t.Fatalf("bucket TTL %v, history %d (%v); want 2s, 1", st.TTL(), st.History(), err)
	}

	if _, err := bk.Acquire(ctx, "k", "h2"); !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), "h1 holds t-lease/k (epoch 1)") {
		t.Fatalf("second acquire: %v, want ErrHeld naming h1", err)
	}
	sent := l.Sent
	if err := bk.Renew(ctx, l); err != nil || !l.Sent.After(sent) {
		t.Fatalf("renew: %v, sent %v after %v", err, l.Sent, sent)
	}
	rec, rev, err := bk.Get(ctx, "k")
	if err != nil || rec.Holder != "h1" || rec.Epoch != 1 || rev != l.Revision || !rec.RenewedAt.Equal(l.Sent) {
		t.Fatalf("Get = %+v at %d, %v; want h1 at epoch 1, revision %d, renewed at %v", rec, rev, err, l.Revision, l.Sent)
	}

	// A renewal of ours that landed although its reply was lost: a copy
	// still on the old revision finds it and carries on from it.
	lagging := *l
	if err := bk.Renew(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := bk.Renew(ctx, &lagging); err != nil || lagging.Revision <= l.Revision || lagging.Epoch != 1 {
		t.Fatalf("renewal on our own older revision: %v (revision %d, epoch %d), want it taken on from revision %d", err, lagging.Revision, lagging.Epoch, l.Revision)
	}
	// A stale revision under someone else's write is lost.
	if _, err := kv.Put(ctx, "k", []byte(`{"holder":"intruder","epoch":99}`)); err != nil {
		t.Fatal(err)
	}
	if err := bk.Renew(ctx, &lagging); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renewal on a stale revision: %v, want ErrLost", err)
	}
	if err := bk.Release(ctx, &lagging); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("release on a stale revision: %v, want ErrLost", err)
	}

	// Left unrenewed, the key expires and the next holder's epoch is
	// higher; the old holder's renewal finds it lost.
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

	// A re-created bucket takes a generation above the floor, and a
	// Bucket opened before the re-creation sees it too: epochs never go
	// backwards.
	if err := b.JS.DeleteKeyValue(ctx, "t-lease"); err != nil {
		t.Fatal(err)
	}
	o := short(t, "t-lease")
	o.Floor = l2.Epoch
	bk2, err := lease.Open(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	if bk2.Generation() != 1 {
		t.Fatalf("generation %d above floor %d, want 1", bk2.Generation(), o.Floor)
	}
	l3, err := bk.Acquire(ctx, "k", "h3")
	if err != nil {
		t.Fatal(err)
	}
	if l3.Epoch != 1<<40+1 {
		t.Fatalf("epoch in the re-created bucket %d, want 2^40+1, above %d", l3.Epoch, l2.Epoch)
	}
	// An existing bucket keeps its generation when the floor is among its
	// epochs, and is raised above a floor it is behind (re-created by a
	// host that had not applied the highest epoch).
	o.Floor = l3.Epoch
	bk3, err := lease.Open(ctx, b.JS, o)
	if err != nil || bk3.Generation() != 1 {
		t.Fatalf("generation of the existing bucket %d (%v), want 1 kept", bk3.Generation(), err)
	}
	o.Floor = 5<<40 + 3
	if bk3, err = lease.Open(ctx, b.JS, o); err != nil || bk3.Generation() != 6 {
		t.Fatalf("generation of the bucket behind floor 5<<40+3: %d (%v), want 6", bk3.Generation(), err)
	}
	if err := bk3.Release(ctx, l3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bk3.Get(ctx, "k"); !errors.Is(err, lease.ErrFree) {
		t.Fatalf("Get after release: %v, want ErrFree", err)
	}
	l4, err := bk3.Acquire(ctx, "k", "h1")
	if err != nil || l4.Epoch <= o.Floor || l4.Epoch>>40 != 6 {
		t.Fatalf("after release: %+v, %v; want an epoch of generation 6, above %d", l4, err, o.Floor)
	}
	if _, err := bk3.Acquire(ctx, "other", "h2"); err != nil {
		t.Fatal(err)
	}
	all, err := bk3.List(ctx)
	if err != nil || len(all) != 2 || all["k"].Holder != "h1" || all["k"].Epoch != l4.Epoch || all["other"].Holder != "h2" {
		t.Fatalf("List = %v, %v", all, err)
	}
}

func TestOpenRefusesAShortTTL(t *testing.T) {
	t.Parallel()
	_, b := bustest.Embedded(t)
	o := lease.NewOptions("t-short")
	o.TTL = 5 * time.Second
	if _, err := lease.Open(context.Background(), b.JS, o); err == nil || !strings.Contains(err.Error(), "= 8.5s") {
		t.Fatalf("Open with a 5 s TTL: %v, want it refused with the numbers", err)
	}
}
