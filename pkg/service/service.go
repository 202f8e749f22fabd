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
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/telemetry"
)

// Delivery is a consumed message as a handler sees it: its id, subject,
// place in the stream, delivery count and headers.
type Delivery = bus.Message

// Message is a consumed, validated event or command.
type Message struct {
	Delivery
	Type events.Type
	// Event is a pointer to the decoded struct, e.g. *events.HostDown.
	Event any
}

// Handler applies one message: its changes through tx, and the events it
// emits with tx.Emit, commit together with the message's inbox entry.
//
// What a handler may do: read and write its service's state through tx;
// emit events (tx.Emit); enqueue long work (tx.Enqueue) and register
// in-memory signals to fire once the change is durable (tx.AfterCommit).
// What it may not do: anything outside tx — no network call, no file
// write, no goroutine, no wake-up of a loop other than through
// tx.AfterCommit, nothing slow. A handler runs more than once for one
// message: in an optimistic batch that another message poisons, its first
// run is rolled back and it runs again; a crash before the ack redelivers
// the message (the inbox then skips it). Only what commits through tx
// happens, exactly once. An error rolls the message's changes back and
// it is redelivered after a backoff, up to the consumer's MaxDeliver, then
// dead-lettered.
type Handler func(ctx context.Context, tx *store.Tx, m Message) error

// Subscription routes one event or command type to a handler through its
// own durable consumer. Make one with On.
type Subscription struct {
	// Subject is the type's subject, e.g. "lifeboat.event.host.down".
	Subject   string
	handle    Handler
	addressed bool
}

// Addressed makes a command subscription host-bound: it consumes only the
// commands addressed to this host's process,
// lifeboat.cmd.<service>.<host>.<verb> (client.CommandTo), through this
// host's own consumer. An unaddressed command is consumed once, by
// whichever host pulls it.
func (s Subscription) Addressed() Subscription {
	s.addressed = true
	return s
}

// On subscribes h to the event or command type T (a struct of the events
// catalog): h gets the decoded *T, never an interface to cast.
func On[T any](h func(ctx context.Context, tx *store.Tx, ev *T, d Delivery) error) Subscription {
	subject := events.SubjectOf[T]()
	return Subscription{Subject: subject, handle: func(ctx context.Context, tx *store.Tx, m Message) error {
		ev, ok := m.Event.(*T)
		if !ok {
			return fmt.Errorf("service: %s decoded as %T, want *%T", subject, m.Event, *new(T))
		}
		return h(ctx, tx, ev, m.Delivery)
	}}
}

// Job is a queued job as a worker sees it (see store.Tx.Enqueue).
type Job = store.Job

// Finish records a job's outcome in the transaction that removes the job.
type Finish = store.Finish

// WorkKind is a kind of queued job and the worker that runs it. Make one
// with Work.
type WorkKind struct {
	Kind    string
	run     store.Worker
	backoff func(attempt int) time.Duration
}

// WithBackoff sets the delay before a failed job's next attempt (the
// queue's default is exponential from 1 s to 5 min); Deps.WorkBackoff, when
// the process sets it, still wins.
func (w WorkKind) WithBackoff(f func(attempt int) time.Duration) WorkKind {
	w.backoff = f
	return w
}

// Work declares the worker of the jobs of kind, whose payload is a T. The
// worker runs after the enqueuing transaction committed, on a goroutine of
// the runtime, and is cancelled at shutdown (the job then runs again at the
// next start). It returns the outcome to commit, or an error to be retried
// after a backoff; see store.Worker.
func Work[T any](kind string, run func(ctx context.Context, j Job, payload *T) (Finish, error)) WorkKind {
	return WorkKind{Kind: kind, run: func(ctx context.Context, j store.Job) (store.Finish, error) {
		p := new(T)
		if err := j.Decode(p); err != nil {
			// A payload this build cannot read will not become readable:
			// drop the job, saying so, rather than retry it for ever.
			return func(ctx context.Context, tx *store.Tx) error {
				slog.ErrorContext(ctx, "work queue: job dropped", slog.String("error", err.Error()))
				return nil
			}, nil
		}
		return run(ctx, j, p)
	}}
}

// Endpoint is a request/reply endpoint at lifeboat.api.<service>.<Name>,
// answered by any one host running the service; a host-scoped one is a
// question for one host's process, at lifeboat.api.<service>.<host>.<Name>
// (client.CallHost).
type Endpoint struct {
	Name       string
	Handler    micro.HandlerFunc
	HostScoped bool
	// Operator marks an endpoint that changes state at an operator's
	// request (plan set): it is audited, and with Deps.Auth it answers
	// only requests an operator key signed (see operatorOnly).
	Operator bool
}

// Spec describes a service to the runtime.
type Spec struct {
	// Name is one of events.Services, e.g. "backup-scheduler".
	Name        string
	Description string
	// Migrations are the service's schema migrations (lifeboat.dev/sql).
	Migrations fs.FS
	// Replicated names the service's replicated tables: what every host
	// derives from the same events, so must hold the same rows everywhere
	// (the digest endpoint hashes them; a host that must rebuild copies
	// them from a peer). The other tables are this host's own. Handlers
	// that apply events to them take time, randomness and configuration
	// only from the event and replicated state (DESIGN §1).
	Replicated []string
	// Init runs after the database is open and before any message is
	// consumed; the service keeps rt to reach its database and bus.
	Init func(ctx context.Context, rt *Runtime) error
	// Subscriptions are consumed once Init has run.
	Subscriptions []Subscription
	// Work are the kinds of queued job the service runs (see Work).
	Work []WorkKind
	// Endpoints are added beside "status".
	Endpoints []Endpoint
	// Status adds the service's own facts to its status reply.
	Status func(ctx context.Context) (any, error)
	// Leader, when set, gives the service a leader: one host at a time
	// holds its lease, reconciles, runs the jobs owned by
	// OwnerLeader(name) and consumes the cluster-wide (unaddressed)
	// commands.
	Leader *Leader
	// Run, when set, runs beside the consumers until ctx ends (timers,
	// watchers); an error from it stops the service, and Runtime.Run
	// returns it.
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
	AfterCommit func(service string, batch []*bus.Delivery)
	// Owns says whether this process runs a queued job with the given
	// owner; nil runs the jobs owned by no one in particular ("") and by
	// this host (OwnerHost). Jobs owned by OwnerLeader(service) run while
	// this host leads the service, whatever Owns says.
	Owns func(owner string) bool
	// Now is the clock of the service's store and work queue; nil means
	// time.Now.
	Now func() time.Time
	// Instances says which instances' leases this host holds (DESIGN §1
	// "Instances": the holder is the instance's active host); nil when no
	// instance is declared.
	Instances Instances
	// LeaderTTL and LeaseMargin, when set, replace the lease defaults of
	// a service leader whose Spec.Leader names no TTL (lifeboat.yaml's
	// leases.leader_ttl and leases.margin).
	LeaderTTL, LeaseMargin time.Duration
	// LeaseAllowance, when set, replaces the election allowance a leader
	// lease's TTL must outlast (tests with short leases).
	LeaseAllowance time.Duration
	// WorkBackoff, when set, is the delay before a failed job's next
	// attempt for every kind (tests shorten it); nil leaves each kind's
	// (WorkKind.WithBackoff, or store.NewQueueOptions's).
	WorkBackoff func(attempt int) time.Duration
	// Auth is the cluster's keys (lifeboat up --auth): commands and
	// Operator endpoints then act only on what an operator key signed.
	// nil on a cluster without authentication (loopback), where they act
	// on everything and record the signature when there is one.
	Auth *auth.Cluster
}

// Instances answers whether this host holds an instance's lease, and in
// which epoch (instances.Leases).
type Instances interface {
	Holds(instance string) (epoch uint64, ok bool)
}

// OwnerInstance is the owner of a job that only the host holding
// instance's lease (its active host) may run, such as the instance's
// backups.
func OwnerInstance(instance string) string { return "instance:" + instance }

// InstanceEpoch is this host's epoch of instance's lease while it holds
// it (it is then the instance's active host); false otherwise, and always
// when no instance is declared.
func (rt *Runtime) InstanceEpoch(instance string) (uint64, bool) {
	if rt.Deps.Instances == nil {
		return 0, false
	}
	return rt.Deps.Instances.Holds(instance)
}

// OwnerHost is the owner of a job that only host may run.
func OwnerHost(host string) string { return "host:" + host }

// Runtime is a running service.
type Runtime struct {
	Spec Spec
	Deps Deps
	// DB is the service's database: reads through DB.R, writes through
	// DB.Update (or a handler's tx), never around the inbox and outbox.
	DB        *store.DB
	Publisher *bus.Publisher
	Logger    *slog.Logger
	Source    string

	started time.Time
	sub     *bus.Subscriber
	svc     micro.Service
	ready   chan struct{}

	ctx    context.Context // the service's life; cancelled by the first failure
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	dead     int64
	rebuilt  string      // what the last rebuild from a peer did
	stopping bool        // no goroutine starts any more
	consumed []*consumer // set once by start
	leader   leadership
	wg       sync.WaitGroup // every goroutine started with Go, and endpoint calls
	failed   error          // the first failure
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
	rt.leader.nudge = make(chan struct{}, 1)
	sopts := store.NewOptions(rt.Source, spec.Migrations)
	sopts.Now = deps.Now
	sopts.Emitter = spec.Name
	db, err := store.Open(ctx, DBPath(deps.DataDir, spec.Name), sopts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	rt.DB = db
	rt.Publisher = bus.NewPublisher(deps.Bus.JS)
	return rt, nil
}

// Ready is closed once the service consumes and answers its endpoints.
func (rt *Runtime) Ready() <-chan struct{} { return rt.ready }

// Context is the service's life: it ends when Run's context ends or the
// service fails. Long work outside Go (an endpoint's reply) uses it.
func (rt *Runtime) Context() context.Context { return rt.ctx }

// Go runs fn on a goroutine of the service, with the service's context.
// Every goroutine of a service starts here: shutdown waits for them all
// before the database closes, and an error (other than the context's end)
// or a panic from one stops the whole service, whose Run returns it. Go
// returns false, and runs nothing, once shutdown has begun.
func (rt *Runtime) Go(fn func(ctx context.Context) error) bool {
	if !rt.enter() {
		return false
	}
	go func() {
		defer rt.wg.Done()
		defer func() {
			if p := recover(); p != nil {
				rt.fail(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			}
		}()
		if err := fn(rt.ctx); err != nil && !errors.Is(err, context.Canceled) {
			rt.fail(err)
		}
	}()
	return true
}

// Listen hands every core NATS message on subject (liveness kept off the
// streams, such as heartbeats) to fn, one at a time on a goroutine of the
// service, until the service stops. Core NATS does not redeliver: a
// message fn fails on is logged and dropped.
func (rt *Runtime) Listen(subject string, fn func(ctx context.Context, m bus.Message) error) error {
	msgs := make(chan *nats.Msg, 1024)
	sub, err := rt.Deps.Bus.NC.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("listen %s: %w", subject, err)
	}
	ok := rt.Go(func(ctx context.Context) error {
		defer func() { _ = sub.Unsubscribe() }()
		for {
			select {
			case <-ctx.Done():
				return nil
			case m := <-msgs:
				if err := fn(ctx, bus.Message{Subject: m.Subject, Header: m.Header, Body: m.Data}); err != nil && ctx.Err() == nil {
					rt.Logger.WarnContext(ctx, "message dropped", slog.String("subject", m.Subject), slog.String("error", err.Error()))
				}
			}
		}
	})
	if !ok {
		_ = sub.Unsubscribe()
	}
	return nil
}

// enter counts a goroutine or call in, unless shutdown has begun.
func (rt *Runtime) enter() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopping {
		return false
	}
	rt.wg.Add(1)
	return true
}

// fail records the service's first failure and stops it.
func (rt *Runtime) fail(err error) {
	rt.mu.Lock()
	if rt.failed == nil {
		rt.failed = err
		rt.Logger.Error("service failed; stopping it", slog.String("error", err.Error()))
	}
	rt.mu.Unlock()
	rt.cancel(err)
}

// Run runs the service until ctx ends or the service fails, then shuts
// down in order: the endpoints stop answering, every goroutine ends (the
// consumers finish and ack the batch in flight, queued jobs are cancelled
// and given back), the consumers stop, the outbox is flushed, and the
// database closes last. It returns the first failure (nil after a clean
// stop), also when Init or a subscription fails half-way.
func (rt *Runtime) Run(ctx context.Context) error {
	rt.started = time.Now()
	rt.ctx, rt.cancel = context.WithCancelCause(ctx)
	defer rt.cancel(nil)
	defer rt.DB.Close()

	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relay := store.NewRelay(rt.DB, rt.Publisher, rt.Logger)
	if tel := rt.Deps.Telemetry; tel != nil {
		relay.Report = func(n int64) { tel.OutboxPending.WithLabelValues(rt.Spec.Name).Set(float64(n)) }
	}
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }()

	rt.sub = bus.NewSubscriber(rt.Deps.Bus.JS, rt.Deps.Consumer(rt.Spec.Name), rt.Logger)
	defer rt.sub.Close()
	defer rt.shutdown()

	if err := rt.start(); err != nil {
		rt.fail(err)
	} else {
		close(rt.ready)
		rt.Logger.Info("service started", slog.String("db", rt.DB.Path), slog.Int("subscriptions", len(rt.Spec.Subscriptions)))
	}
	<-rt.ctx.Done()
	rt.shutdown()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.failed != nil {
		return fmt.Errorf("%s: %w", rt.Spec.Name, rt.failed)
	}
	rt.Logger.Info("service stopped")
	return nil
}

// start runs Init, adds the endpoints and starts the consumers, the work
// queue and Spec.Run.
func (rt *Runtime) start() error {
	if rt.Spec.Init != nil {
		if err := rt.Spec.Init(rt.ctx, rt); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	cs, err := rt.consumers()
	if err != nil {
		return err
	}
	rt.consumed = cs // before the status endpoint can read it
	if err := rt.addMicro(); err != nil {
		return err
	}
	rt.dropLegacy(rt.ctx)
	var leaderCommands *consumer
	for _, c := range cs {
		if c.leader && rt.Spec.Leader != nil {
			leaderCommands = c // consumed while this host leads
			continue
		}
		if c.events {
			if err := rt.position(rt.ctx, c); err != nil {
				return err
			}
		}
		ch, err := rt.sub.Subscribe(rt.ctx, c.Consumer)
		if err != nil {
			return err
		}
		rt.Go(func(ctx context.Context) error { rt.consume(ctx, c, ch); return nil })
	}
	if rt.Spec.Leader != nil {
		rt.Go(func(ctx context.Context) error { return rt.lead(ctx, leaderCommands) })
	}
	if len(rt.Spec.Work) > 0 {
		qopts := store.NewQueueOptions()
		qopts.Logger = rt.Logger
		owns, host, leader := rt.Deps.Owns, OwnerHost(rt.Deps.Host), OwnerLeader(rt.Spec.Name)
		if owns == nil {
			owns = func(owner string) bool { return owner == "" || owner == host }
		}
		qopts.Owns = func(owner string) bool {
			if owner == leader {
				_, ok := rt.Leading()
				return ok
			}
			if inst, ok := strings.CutPrefix(owner, "instance:"); ok {
				_, holds := rt.InstanceEpoch(inst)
				return holds
			}
			return owns(owner)
		}
		qopts.KindBackoff = map[string]func(int) time.Duration{}
		for _, w := range rt.Spec.Work {
			qopts.Workers[w.Kind] = w.run
			if w.backoff != nil {
				qopts.KindBackoff[w.Kind] = w.backoff
			}
		}
		if rt.Deps.WorkBackoff != nil {
			qopts.Backoff, qopts.KindBackoff = rt.Deps.WorkBackoff, nil
		}
		q := store.NewQueue(rt.DB, qopts)
		rt.Go(q.Run)
	}
	if rt.Spec.Run != nil {
		rt.Go(rt.Spec.Run)
	}
	return nil
}

// shutdown stops the endpoints and waits for every goroutine and call.
func (rt *Runtime) shutdown() {
	rt.cancel(nil)
	rt.mu.Lock()
	rt.stopping = true
	rt.mu.Unlock()
	if rt.svc != nil {
		_ = rt.svc.Stop()
	}
	rt.wg.Wait()
}

func (rt *Runtime) addMicro() error {
	svc, err := micro.AddService(rt.Deps.Bus.NC, micro.Config{
		Name:        "lifeboat-" + rt.Spec.Name,
		Version:     MicroVersion(rt.Deps.Version),
		Description: rt.Spec.Description,
		Metadata:    map[string]string{"host": rt.Deps.Host},
	})
	if err != nil {
		return fmt.Errorf("%s: micro service: %w", rt.Spec.Name, err)
	}
	rt.svc = svc
	g := svc.AddGroup(events.APISubject(rt.Spec.Name, ""))
	// The host's group: no queue group, since exactly one process serves
	// each host's subjects (a second one claiming the host answers too, and
	// lifeboat up refuses it).
	hg := svc.AddGroup(events.HostAPISubject(rt.Spec.Name, rt.Deps.Host, ""), micro.WithGroupQueueGroupDisabled())
	eps := append([]Endpoint{
		{Name: api.Status, Handler: rt.status},
		{Name: api.Status, Handler: rt.status, HostScoped: true},
		{Name: api.DigestEndpoint, Handler: rt.digestEndpoint, HostScoped: true},
		{Name: api.SnapshotEndpoint, Handler: rt.snapshotEndpoint, HostScoped: true},
	}, rt.Spec.Endpoints...)
	for _, ep := range eps {
		add := g.AddEndpoint
		if ep.HostScoped {
			add = hg.AddEndpoint
		}
		h := ep.Handler
		if ep.Operator {
			h = rt.operatorOnly(h)
		}
		if err := add(ep.Name, rt.tracked(h)); err != nil {
			svc.Stop()
			return fmt.Errorf("%s: endpoint %s: %w", rt.Spec.Name, ep.Name, err)
		}
	}
	return nil
}

// tracked counts an endpoint call in, so that shutdown waits for it before
// the database closes; a call that arrives once shutdown has begun is
// answered 503.
func (rt *Runtime) tracked(h micro.HandlerFunc) micro.HandlerFunc {
	return func(req micro.Request) {
		if !rt.enter() {
			_ = req.Error("503", rt.Spec.Name+" is shutting down; try again once it is back", nil)
			return
		}
		defer rt.wg.Done()
		h(req)
	}
}

// Status is the reply of every service's status endpoint (the contract's
// type).
type Status = api.ServiceStatus

// ConsumerStatus is one durable consumer as JetStream sees it.
type ConsumerStatus = api.ConsumerStatus

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
	st.Rebuilt = rt.rebuilt
	rt.mu.Unlock()
	for _, c := range rt.consumed {
		cs := ConsumerStatus{Subject: strings.Join(c.Filters, " "), Durable: c.Durable}
		if cons, err := rt.Deps.Bus.JS.Consumer(ctx, c.Stream, c.Durable); err == nil {
			if info, err := cons.Info(ctx); err == nil {
				cs.Pending, cs.AckPending, cs.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
			}
		}
		st.Consumers = append(st.Consumers, cs)
	}
	if st.Applied, err = rt.DB.Applied(ctx, events.StreamEvents); err != nil {
		return st, err
	}
	st.Leader = rt.leaderStatus(ctx)
	if rt.Spec.Status != nil {
		if st.Details, err = rt.Spec.Status(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (rt *Runtime) status(req micro.Request) {
	ctx, cancel := context.WithTimeout(rt.ctx, 5*time.Second)
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

// MicroVersion turns a build version into the semantic version micro requires:
// a release tag (v1.2.3) loses its v; anything else, such as the commit id
// `git describe --always --dirty` gives an untagged checkout, becomes build
// metadata of 0.0.0 (0.0.0+d8d6f31-dirty), so any build can start.
func MicroVersion(v string) string {
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
