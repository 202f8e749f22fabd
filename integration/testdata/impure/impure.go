// Package impure is the fixture of TestApplyPurity: a service whose
// handlers the analysis must report (the clock through a helper, rand, the
// clock through a func-valued field, the environment behind a wrapper) and
// one it must pass (pure, though it logs, enqueues a job and registers an
// AfterCommit signal that reads the clock).
//
// It lives under testdata so that `go build ./...` and `go vet ./...` skip
// it; the test loads it by its directory.
package impure

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
)

// Service holds its clock in a field, as the real services do.
type Service struct {
	clock func() time.Time
	log   *slog.Logger
	wake  chan struct{}
}

// New returns a Service on the host's clock.
func New() *Service {
	return &Service{clock: time.Now, log: slog.Default(), wake: make(chan struct{}, 1)}
}

// Subscriptions registers one handler of each kind.
func (s *Service) Subscriptions() []service.Subscription {
	return []service.Subscription{
		service.On(s.handleHostDown),
		service.On(handleHostUp),
		service.On(func(ctx context.Context, tx *store.Tx, ev *events.InstanceActivated, d service.Delivery) error {
			return s.record(ctx, tx, ev.Instance, s.clock())
		}),
		service.On(logged(s.handleFailoverStarted)),
		service.On(s.handleFailoverCompleted),
	}
}

// handleHostDown stamps the host's clock through a helper.
func (s *Service) handleHostDown(ctx context.Context, tx *store.Tx, ev *events.HostDown, d service.Delivery) error {
	return s.record(ctx, tx, ev.Host, stamp())
}

func stamp() time.Time { return time.Now().UTC() }

// handleHostUp draws a random number.
func handleHostUp(ctx context.Context, tx *store.Tx, ev *events.HostUp, d service.Delivery) error {
	_, err := tx.ExecContext(ctx, "UPDATE hosts SET nonce = ? WHERE host = ?", rand.Int64(), ev.Host)
	return err
}

// handleFailoverStarted reads its configuration from the environment.
func (s *Service) handleFailoverStarted(ctx context.Context, tx *store.Tx, ev *events.FailoverStarted, d service.Delivery) error {
	return s.record(ctx, tx, ev.Instance+"@"+zone(), time.Time{})
}

func zone() string { return os.Getenv("LIFEBOAT_ZONE") }

// logged wraps a handler, as middleware does.
func logged[T any](h func(context.Context, *store.Tx, *T, service.Delivery) error) func(context.Context, *store.Tx, *T, service.Delivery) error {
	return func(ctx context.Context, tx *store.Tx, ev *T, d service.Delivery) error {
		err := h(ctx, tx, ev, d)
		slog.DebugContext(ctx, "handled", slog.String("subject", d.Subject))
		return err
	}
}

// handleFailoverCompleted is pure: its time is the stream's (the same on
// every host), the clock it reads runs after the commit (AfterCommit), and
// its long work is a job (Enqueue), whose worker is not an apply path.
func (s *Service) handleFailoverCompleted(ctx context.Context, tx *store.Tx, ev *events.FailoverCompleted, d service.Delivery) error {
	s.log.InfoContext(ctx, "failover completed", slog.String("instance", ev.Instance))
	if _, err := tx.Enqueue(ctx, store.Work{ID: "switch:" + d.ID, Kind: "switch", Payload: ev}); err != nil {
		return err
	}
	tx.AfterCommit(func() {
		_ = s.clock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
	return s.record(ctx, tx, ev.Instance, d.Timestamp)
}

func (s *Service) record(ctx context.Context, tx *store.Tx, key string, at time.Time) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO seen (key, at) VALUES (?, ?)", key, at.UnixMilli())
	return err
}

// Work is the worker of the "switch" jobs: it may read the clock, since it
// runs after the commit, on the owner host only.
func (s *Service) Work() service.WorkKind {
	return service.Work("switch", func(ctx context.Context, j service.Job, ev *events.FailoverCompleted) (service.Finish, error) {
		_ = time.Now()
		return nil, nil
	})
}
