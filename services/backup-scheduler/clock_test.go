package backupscheduler

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// fakeClock is the service's clock in tests (service.Deps.Now): it stands
// still until Advance moves it, and each move wakes the schedulers that
// run on it, so a schedule such as 1s,2s/4s runs as fast as the backups
// are taken, not at the wall clock's pace.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	wakes []func()
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start} }

// testClock is a fake clock an hour behind the wall clock, so that what
// the service does not time itself — a store's consistent_at, a file's
// times — comes after the service's own times, as it would at the wall
// clock's pace: a backup is consistent after it was started.
func testClock() *fakeClock { return newFakeClock(time.Now().Add(-time.Hour)) }

// Now is the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d and wakes whoever watches it.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	wakes := append([]func(){}, c.wakes...)
	c.mu.Unlock()
	for _, w := range wakes {
		w()
	}
}

// onAdvance calls w after every move of the clock.
func (c *fakeClock) onAdvance(w func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wakes = append(c.wakes, w)
}

// clockedNode is the service on a fake clock, whose moves wake its
// scheduler.
type clockedNode struct {
	*node
	rt    *service.Runtime
	clock *fakeClock
}

// startClocked is startNode with the service's clock clock.
func startClocked(t *testing.T, b *bus.Bus, cfg Config, dataDir string, rec *recorder, clock *fakeClock) *clockedNode {
	t.Helper()
	spec, s, err := newSpec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock.onAdvance(s.poke)
	deps := service.Deps{Bus: b, Host: "test-host", DataDir: dataDir, Version: "0.0.1-test", Now: clock.Now}
	rt, stop := servicetest.Start(t, spec, deps)
	return &clockedNode{node: &node{t: t, b: b, dataDir: dataDir, rec: rec, stopFn: stop}, rt: rt, clock: clock}
}

// settled says whether the service has done all that is due at the
// clock's time: every enabled plan's next backup is due later, no job is
// queued, and the outbox is published.
func (n *clockedNode) settled() error {
	ctx := n.t.Context()
	now := n.clock.Now()
	plans, err := db.New(n.rt.DB.R).PlanList(ctx)
	if err != nil {
		return err
	}
	for _, r := range plans {
		p, err := decodePlan(r)
		if err != nil {
			return err
		}
		if !p.Disabled && (!r.NextDueAt.Valid || r.NextDueAt.Int64 <= now.UnixMilli()) {
			return fmt.Errorf("plan %s is due at %v, the clock says %s", p.Name, r.NextDueAt, now)
		}
	}
	jobs, err := n.rt.DB.Jobs(ctx, 10)
	if err != nil {
		return err
	}
	if len(jobs) > 0 {
		return fmt.Errorf("jobs queued: %+v", jobs)
	}
	if pending, err := n.rt.DB.Pending(ctx); err != nil || pending > 0 {
		return fmt.Errorf("%d events in the outbox (%v)", pending, err)
	}
	return nil
}

// advanceUntil lets the service do what is due, then moves the clock on by
// step, until cond holds (checked whenever the service has settled). The
// clock moves only when the service has settled, so every slot of the
// schedule is served in turn, as at the wall clock's pace; timeout bounds
// the real time it may take.
func (n *clockedNode) advanceUntil(step, timeout time.Duration, cond func() error) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		testtool.WaitFor(n.t, time.Until(deadline), n.settled)
		// (An event published a moment ago may not have reached the
		// recorder yet: then the clock moves on one step more than it
		// had to, which conditions of the form "at least n" allow.)
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("at %s: condition not met in %s: %v", n.clock.Now(), timeout, err)
		}
		n.clock.Advance(step)
	}
}

// allOf is a condition that holds when all of conds do.
func allOf(conds ...func() error) func() error {
	return func() error {
		for _, c := range conds {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}
