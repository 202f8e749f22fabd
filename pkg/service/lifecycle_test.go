package service_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
)

// runUntil starts spec and returns the channel Run's result arrives on.
func runUntil(t *testing.T, ctx context.Context, spec service.Spec, deps service.Deps) (*service.Runtime, <-chan error) {
	t.Helper()
	rt, err := service.New(ctx, spec, deps)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	return rt, done
}

// result waits for Run's result; a Run that does not return is the bug.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// consumers counts the runtime's consumer goroutines still alive.
func consumers() int {
	buf := make([]byte, 4<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "pkg/service.(*Runtime).consume(")
}

func TestAFailingRunStopsTheServiceAndIsReturned(t *testing.T) {
	_, b := bustest.Embedded(t)
	ts := &testService{}
	spec := ts.spec()
	spec.Run = func(ctx context.Context) error { return errors.New("watcher broke") }
	_, done := runUntil(t, context.Background(), spec, servicetest.Deps(b, t.TempDir()))
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "watcher broke") {
		t.Fatalf("Run returned %v, want the Run error", err)
	}
	if n := consumers(); n != 0 {
		t.Fatalf("%d consumers still running after Run returned", n)
	}
}

func TestAFailedSubscriptionStopsTheConsumersAlreadyStarted(t *testing.T) {
	_, b := bustest.Embedded(t)
	ts := &testService{}
	spec := ts.spec()
	// The second subscription's subject is in no stream: subscribing fails
	// after the first consumer has started.
	bad := service.On(ts.handleHostDown)
	bad.Subject = "lifeboat.nowhere.host.down"
	spec.Subscriptions = append(spec.Subscriptions, bad)
	rt, done := runUntil(t, context.Background(), spec, servicetest.Deps(b, t.TempDir()))
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "lifeboat.nowhere.host.down") {
		t.Fatalf("Run returned %v, want the subscription's error", err)
	}
	if n := consumers(); n != 0 {
		t.Fatalf("%d consumers still running after Run returned", n)
	}
	if err := rt.DB.Update(context.Background(), func(tx *store.Tx) error { return nil }); err == nil {
		t.Fatal("the database is still open after Run returned")
	}
}

func TestAGoroutineFailureOrPanicStopsTheService(t *testing.T) {
	for name, fn := range map[string]func(context.Context) error{
		"error": func(context.Context) error { return errors.New("sampler broke") },
		"panic": func(context.Context) error { panic("sampler broke") },
	} {
		t.Run(name, func(t *testing.T) {
			_, b := bustest.Embedded(t)
			ts := &testService{}
			spec := ts.spec()
			spec.Init = func(ctx context.Context, rt *service.Runtime) error {
				rt.Go(func(ctx context.Context) error { <-ctx.Done(); return nil }) // a well-behaved one
				rt.Go(fn)
				return nil
			}
			_, done := runUntil(t, context.Background(), spec, servicetest.Deps(b, t.TempDir()))
			if err := result(t, done); err == nil || !strings.Contains(err.Error(), "sampler broke") {
				t.Fatalf("Run returned %v", err)
			}
		})
	}
}

func TestShutdownWaitsForEndpointCallsAndGoroutinesBeforeClosingTheDatabase(t *testing.T) {
	_, b := bustest.Embedded(t)
	ts := &testService{}
	spec := ts.spec()
	var rt *service.Runtime
	entered := make(chan struct{})
	lateWrite := make(chan error, 2)
	write := func() error {
		return rt.DB.Update(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecContext(context.Background(), `INSERT INTO applied (event_id, host) VALUES ('late', 'late')`)
			return err
		})
	}
	spec.Endpoints = []service.Endpoint{{Name: "slow", Handler: func(req micro.Request) {
		close(entered)
		<-rt.Context().Done() // shutdown has begun
		lateWrite <- write()
		_ = req.Respond([]byte("{}"))
	}}}
	spec.Init = func(ctx context.Context, r *service.Runtime) error {
		rt = r
		r.Go(func(ctx context.Context) error {
			<-ctx.Done()
			lateWrite <- write()
			return nil
		})
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	rtv, done := runUntil(t, ctx, spec, servicetest.Deps(b, t.TempDir()))
	<-rtv.Ready()
	go func() { _, _ = b.NC.Request(events.APISubject("job-tracker", "slow"), nil, 20*time.Second) }()
	<-entered
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for range 2 {
		if err := <-lateWrite; err != nil {
			t.Fatalf("a write during shutdown failed (the database closed under it): %v", err)
		}
	}
	if rtv.Go(func(context.Context) error { return nil }) {
		t.Fatal("Go started a goroutine after shutdown")
	}
}

func TestQueuedWorkRunsAfterCommitThroughTheRuntime(t *testing.T) {
	_, b := bustest.Embedded(t)
	data := t.TempDir()
	type copyJob struct{ Host string }
	ran := make(chan string, 10)
	spec := service.Spec{
		Name:       "job-tracker",
		Migrations: testMigrations,
		Subscriptions: []service.Subscription{service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
			_, err := tx.Enqueue(ctx, store.Work{ID: "probe-" + m.ID, Kind: "probe", Key: ev.Host, Owner: service.OwnerHost("test-host"), Payload: copyJob{ev.Host}})
			return err
		})},
		Work: []service.WorkKind{service.Work("probe", func(ctx context.Context, j service.Job, p *copyJob) (service.Finish, error) {
			ran <- p.Host
			return func(ctx context.Context, tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, host) VALUES (?, ?)`, j.ID, p.Host)
				return err
			}, nil
		})},
	}
	runService(t, b, spec, data)
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"h1"}`)
	select {
	case h := <-ran:
		if h != "h1" {
			t.Fatalf("ran for %s", h)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the queued job did not run")
	}
	bustest.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := appliedHosts(t, data); len(got) != 1 || got[0] != "h1" {
			return fmt.Errorf("applied %v", got)
		}
		return nil
	})
}
