// Package service is the runtime every lifeboat service runs on: its SQLite
// database with the inbox/outbox, its durable consumers with group commit,
// validation and dead-lettering, its NATS micro endpoints (status and its
// own), and a clean shutdown. A service supplies a Spec; handlers are plain
// functions of a decoded event and a transaction.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/telemetry"
)

// Message is a consumed, validated event or command.
type Message struct {
	bus.Delivery
	Type events.Type
	// Event is a pointer to the decoded struct, e.g. *events.HostDown.
	Event any
}

// Handler applies one message. Its changes through tx, and the events it
// emits with tx.Emit, commit together with the message's inbox entry. An
// error rolls them back and the message is redelivered after a backoff, up to
// the consumer's MaxDeliver, then dead-lettered.
type Handler func(ctx context.Context, tx *store.Tx, m Message) error

// Subscription routes a subject filter to a handler through its own durable
// consumer.
type Subscription struct {
	// Subject is a subject or filter, e.g. "lifeboat.event.host.down" or
	// "lifeboat.cmd.dns-updater.>".
	Subject string
	Handle  Handler
}

// Endpoint is a request/reply endpoint at lifeboat.api.<service>.<Name>.
type Endpoint struct {
	Name    string
	Handler micro.HandlerFunc
}

// Spec describes a service to the runtime.
type Spec struct {
	// Name is one of events.Services, e.g. "backup-scheduler".
	Name        string
	Description string
	// Migrations are the service's schema migrations (lifeboat.dev/sql).
	Migrations fs.FS
	// Init runs after the database is open and before any message is
	// consumed; the service keeps rt to reach its database and bus.
	Init func(ctx context.Context, rt *Runtime) error
	// Subscriptions are consumed once Init has run.
	Subscriptions []Subscription
	// Endpoints are added beside "status".
	Endpoints []Endpoint
	// Status adds the service's own facts to its status reply.
	Status func(ctx context.Context) (any, error)
	// Run, when set, runs beside the consumers until ctx ends (timers,
	// watchers); an error from it stops the service.
	Run func(ctx context.Context) error
}

// Deps are what the process gives every service.
type Deps struct {
	Bus       *bus.Bus
	Host      string
	DataDir   string
	Version   string
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry
	// Consumer shapes every durable consumer (redelivery, backoff).
	Consumer func(service string) bus.ConsumerConfig
	// BatchSize bounds how many messages commit together.
	BatchSize int
	// AfterCommit, when set, is called with each batch's deliveries once
	// the batch is durable and before it is acked (latency measurement,
	// tests).
	AfterCommit func(service string, batch []bus.Delivery)
}

// Runtime is a running service.
type Runtime struct {
	Spec      Spec
	Deps      Deps
	DB        *store.DB
	Publisher *bus.Publisher
	Logger    *slog.Logger
	Source    string

	started time.Time
	sub     *bus.Subscriber
	svc     micro.Service
	ready   chan struct{}
	mu      sync.Mutex
	dead    int64
}

// DBPath is where a service keeps its state: <data>/<service>/state.db.
func DBPath(dataDir, service string) string {
	return filepath.Join(dataDir, service, "state.db")
}

// New opens the service's database and prepares its runtime; Run starts it.
func New(ctx context.Context, spec Spec, deps Deps) (*Runtime, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Consumer == nil {
		deps.Consumer = bus.NewConsumerConfig
	}
	if deps.BatchSize <= 0 {
		deps.BatchSize = 256
	}
	rt := &Runtime{
		Spec:   spec,
		Deps:   deps,
		Logger: deps.Logger.With(slog.String("service", spec.Name)),
		Source: "lifeboat/" + deps.Host + "/" + spec.Name,
		ready:  make(chan struct{}),
	}
	db, err := store.Open(ctx, DBPath(deps.DataDir, spec.Name), store.NewOptions(rt.Source, spec.Migrations))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	rt.DB = db
	rt.Publisher = bus.NewPublisher(deps.Bus.JS)
	return rt, nil
}

// Ready is closed once the service consumes and answers its endpoints.
func (rt *Runtime) Ready() <-chan struct{} { return rt.ready }

// Run consumes until ctx ends, then shuts down cleanly: it stops taking
// messages, finishes and acks the batch in flight, flushes the outbox and
// closes the database.
func (rt *Runtime) Run(ctx context.Context) error {
	rt.started = time.Now()
	defer rt.DB.Close()
	if rt.Spec.Init != nil {
		if err := rt.Spec.Init(ctx, rt); err != nil {
			return fmt.Errorf("%s: init: %w", rt.Spec.Name, err)
		}
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relay := store.NewRelay(rt.DB, rt.Publisher, rt.Logger)
	if tel := rt.Deps.Telemetry; tel != nil {
		relay.Report = func(n int64) { tel.OutboxPending.WithLabelValues(rt.Spec.Name).Set(float64(n)) }
	}
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }()

	if err := rt.addMicro(); err != nil {
		return err
	}
	defer rt.svc.Stop()

	rt.sub = bus.NewSubscriber(rt.Deps.Bus.JS, rt.Deps.Consumer(rt.Spec.Name), rt.Logger)
	defer rt.sub.Close()
	var wg sync.WaitGroup
	errc := make(chan error, len(rt.Spec.Subscriptions)+1)
	for _, s := range rt.Spec.Subscriptions {
		ch, err := rt.sub.Subscribe(ctx, s.Subject)
		if err != nil {
			return fmt.Errorf("%s: %w", rt.Spec.Name, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); rt.consume(ctx, s, ch) }()
	}
	if rt.Spec.Run != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.Spec.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", rt.Spec.Name, err)
			}
		}()
	}
	close(rt.ready)
	rt.Logger.Info("service started", slog.String("db", rt.DB.Path), slog.Int("subscriptions", len(rt.Spec.Subscriptions)))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	wg.Wait()
	rt.Logger.Info("service stopped")
	return runErr
}

func (rt *Runtime) addMicro() error {
	svc, err := micro.AddService(rt.Deps.Bus.NC, micro.Config{
		Name:        "lifeboat-" + rt.Spec.Name,
		Version:     semver(rt.Deps.Version),
		Description: rt.Spec.Description,
		Metadata:    map[string]string{"host": rt.Deps.Host},
	})
	if err != nil {
		return fmt.Errorf("%s: micro service: %w", rt.Spec.Name, err)
	}
	rt.svc = svc
	g := svc.AddGroup(events.APISubject(rt.Spec.Name, ""))
	eps := append([]Endpoint{{Name: "status", Handler: rt.status}}, rt.Spec.Endpoints...)
	for _, ep := range eps {
		if err := g.AddEndpoint(ep.Name, ep.Handler); err != nil {
			svc.Stop()
			return fmt.Errorf("%s: endpoint %s: %w", rt.Spec.Name, ep.Name, err)
		}
	}
	return nil
}

// Status is the reply of every service's status endpoint.
type Status struct {
	Service       string           `json:"service"`
	Host          string           `json:"host"`
	Version       string           `json:"version"`
	StartedAt     time.Time        `json:"started_at"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Database      string           `json:"database"`
	Handled       int64            `json:"handled"`
	OutboxPending int64            `json:"outbox_pending"`
	DeadLettered  int64            `json:"dead_lettered"`
	Consumers     []ConsumerStatus `json:"consumers"`
	Details       any              `json:"details,omitempty"`
}

// ConsumerStatus is one durable consumer as JetStream sees it.
type ConsumerStatus struct {
	Subject     string `json:"subject"`
	Durable     string `json:"durable"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
}

// CurrentStatus gathers the service's status.
func (rt *Runtime) CurrentStatus(ctx context.Context) (Status, error) {
	st := Status{
		Service:       rt.Spec.Name,
		Host:          rt.Deps.Host,
		Version:       rt.Deps.Version,
		StartedAt:     rt.started.UTC(),
		UptimeSeconds: time.Since(rt.started).Seconds(),
		Database:      rt.DB.Path,
		Consumers:     []ConsumerStatus{},
	}
	var err error
	if st.Handled, err = rt.DB.Handled(ctx); err != nil {
		return st, err
	}
	if st.OutboxPending, err = rt.DB.Pending(ctx); err != nil {
		return st, err
	}
	rt.mu.Lock()
	st.DeadLettered = rt.dead
	rt.mu.Unlock()
	for _, s := range rt.Spec.Subscriptions {
		cs := ConsumerStatus{Subject: s.Subject, Durable: bus.DurableName(rt.Spec.Name, s.Subject)}
		if stream, err := bus.StreamFor(s.Subject); err == nil {
			if c, err := rt.Deps.Bus.JS.Consumer(ctx, stream, cs.Durable); err == nil {
				if info, err := c.Info(ctx); err == nil {
					cs.Pending, cs.AckPending, cs.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
				}
			}
		}
		st.Consumers = append(st.Consumers, cs)
	}
	if rt.Spec.Status != nil {
		if st.Details, err = rt.Spec.Status(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (rt *Runtime) status(req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rt.CurrentStatus(ctx)
	if err != nil {
		_ = req.Error("500", err.Error(), nil)
		return
	}
	_ = req.RespondJSON(st)
}

// RespondJSON answers req with v, or with an error carrying code when err is
// not nil; endpoints use it so that every API speaks the same way.
func RespondJSON(req micro.Request, v any, err error) {
	if err != nil {
		code := "500"
		var ce *CodedError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		_ = req.Error(code, err.Error(), nil)
		return
	}
	b, mErr := json.Marshal(v)
	if mErr != nil {
		_ = req.Error("500", mErr.Error(), nil)
		return
	}
	_ = req.Respond(b)
}

// CodedError is an API error with a status code ("400" bad request, "404"
// not found, "409" conflict).
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// BadRequest wraps err as a "400" API error.
func BadRequest(err error) error { return &CodedError{Code: "400", Err: err} }

// NotFound wraps err as a "404" API error.
func NotFound(err error) error { return &CodedError{Code: "404", Err: err} }

// semver turns a build version into the semantic version micro requires:
// a release tag (v1.2.3) loses its v; anything else, such as the commit id
// `git describe --always --dirty` gives an untagged checkout, becomes build
// metadata of 0.0.0 (0.0.0+d8d6f31-dirty), so any build can start.
func semver(v string) string {
	v = strings.TrimPrefix(v, "v")
	if semverRE.MatchString(v) {
		return v
	}
	meta := strings.Trim(notMeta.ReplaceAllString(v, "-"), "-")
	if meta == "" || meta == "dev" {
		return "0.0.0-dev"
	}
	return "0.0.0+" + meta
}

var (
	// semverRE is SemVer 2.0.0's own expression (semver.org).
	semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	// notMeta matches what build metadata may not hold.
	notMeta = regexp.MustCompile(`[^0-9A-Za-z-]+`)
)
