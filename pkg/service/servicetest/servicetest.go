// Package servicetest runs a service on the real runtime in a test: its own
// SQLite file, a real bus, short redelivery delays so that retries and
// crash recoveries show quickly.
package servicetest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/service"
)

// Deps are the test defaults: host "test-host", small batches, a 50 ms
// redelivery backoff, MaxDeliver 3 and a 2 s ack wait.
func Deps(b *bus.Bus, dataDir string) service.Deps {
	return service.Deps{
		Bus: b, Host: "test-host", DataDir: dataDir, Version: "0.0.1", BatchSize: 8,
		Consumer: func(name string) bus.ConsumerConfig {
			c := bus.NewConsumerConfig(name)
			c.Backoff = []time.Duration{50 * time.Millisecond}
			c.MaxDeliver = 3
			c.AckWait = 2 * time.Second
			return c
		},
	}
}

// Quiet is a logger that keeps only errors, for tests that provoke
// warnings on purpose.
var Quiet = slog.New(slog.NewTextHandler(testWriter{}, &slog.HandlerOptions{Level: slog.LevelError}))

type testWriter struct{}

func (testWriter) Write(p []byte) (int, error) { return len(p), nil }

// Start runs spec with deps until the test ends or stop is called, and
// returns once the service consumes. stop waits for a clean shutdown and
// reports an error from it.
func Start(t testing.TB, spec service.Spec, deps service.Deps) (rt *service.Runtime, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := service.New(ctx, spec, deps)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-rt.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("%s stopped at start: %v", spec.Name, err)
	case <-time.After(30 * time.Second): // a slow CI machine, a big catalog to rebuild
		cancel()
		t.Fatalf("%s not ready in 30s", spec.Name)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s stopped with %v", spec.Name, err)
			}
		})
	}
	t.Cleanup(stop)
	return rt, stop
}
