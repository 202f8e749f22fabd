package instances_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/testtool"
)

var twoHosts = instances.Config{"wr": {
	Hosts:   map[string]instances.Host{"hot": {Address: "10.0.0.1"}, "cold": {Address: "10.0.0.2"}},
	Active:  "hot",
	Standby: "cold",
	Store:   instances.Store{Kind: "sqlite", Path: "/var/lib/wr/db.sqlite"},
}}

// runLeases runs one host's instance leases until stop is called.
func runLeases(t *testing.T, b *bus.Bus, host, data string) (l *instances.Leases, stop func()) {
	t.Helper()
	l, err := instances.OpenLeases(context.Background(), b.JS, twoHosts, host, data,
		instances.LeaseOptions{TTL: 2 * time.Second, ElectionAllowance: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = l.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return l, stop
}

func TestThePreferredActiveTakesTheLeaseAndTheStandbyWaits(t *testing.T) {
	_, b := bustest.Embedded(t)
	hotData, coldData := t.TempDir(), t.TempDir()
	cold, stopCold := runLeases(t, b, "cold", coldData)
	hot, stopHot := runLeases(t, b, "hot", hotData)
	var e1 uint64
	testtool.WaitFor(t, 10*time.Second, func() error {
		var ok bool
		if e1, ok = hot.Holds("wr"); !ok {
			return errors.New("hot does not hold wr")
		}
		return nil
	})
	if _, ok := cold.Holds("wr"); ok {
		t.Fatal("cold holds wr too")
	}
	rec, err := cold.Holder(context.Background(), "wr")
	if err != nil || rec.Holder != "hot" || rec.Epoch != e1 {
		t.Fatalf("cold sees %+v, %v; want hot at epoch %d", rec, err, e1)
	}
	// The active goes away: the standby's store does not carry the
	// highest epoch, so it does not take the lease on its own (failover
	// is an operator's or the failover service's decision).
	stopHot()
	testtool.WaitFor(t, 10*time.Second, func() error {
		if _, err := cold.Holder(context.Background(), "wr"); err == nil {
			return errors.New("the lease is still held")
		}
		return nil
	})
	declinedAt := cold.Declined("wr")
	testtool.WaitFor(t, 10*time.Second, func() error {
		if n := cold.Declined("wr"); n < declinedAt+3 {
			return fmt.Errorf("cold declined the free lease %d times since it was freed, want 3", n-declinedAt)
		}
		return nil
	})
	if _, ok := cold.Holds("wr"); ok {
		t.Fatal("cold took the lease with a store behind the highest epoch")
	}
	// The active comes back on its store: a new tenure, a higher epoch.
	hot, _ = runLeases(t, b, "hot", hotData)
	testtool.WaitFor(t, 10*time.Second, func() error {
		e2, ok := hot.Holds("wr")
		if !ok {
			return errors.New("hot does not hold wr")
		}
		if e2 <= e1 {
			return fmt.Errorf("epoch %d, want above %d", e2, e1)
		}
		return nil
	})
	stopCold()
}

func TestAnActiveOnAStaleStoreDoesNotTakeTheLease(t *testing.T) {
	_, b := bustest.Embedded(t)
	hotData := t.TempDir()
	hot, stopHot := runLeases(t, b, "hot", hotData)
	testtool.WaitFor(t, 10*time.Second, func() error {
		if _, ok := hot.Holds("wr"); !ok {
			return errors.New("hot does not hold wr")
		}
		return nil
	})
	stopHot()
	// hot comes back with a store from elsewhere (an old disk): it carries
	// no epoch, below the highest taken, so hot must not take the lease.
	hot, _ = runLeases(t, b, "hot", t.TempDir())
	testtool.WaitFor(t, 10*time.Second, func() error {
		if _, err := hot.Holder(context.Background(), "wr"); err == nil {
			return errors.New("the old tenure's lease has not expired yet")
		}
		return nil
	})
	declinedAt := hot.Declined("wr")
	testtool.WaitFor(t, 10*time.Second, func() error {
		if n := hot.Declined("wr"); n < declinedAt+3 {
			return fmt.Errorf("hot declined the free lease %d times, want 3", n-declinedAt)
		}
		return nil
	})
	if _, ok := hot.Holds("wr"); ok {
		t.Fatal("hot took the lease on a store that does not carry the highest epoch")
	}
}
