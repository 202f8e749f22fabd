// Package syncer is the sync service: it ships every backup taken on this
// host to its targets and verifies it there (DESIGN §3 "sync").
//
// A plan's targets are "standby" (the default) and named targets of
// lifeboat.yaml's sync.targets. A backup of an instance declared in
// lifeboat.yaml's instances goes to its standby: a `dir` target on each of
// the instance's other hosts, named by that host. Bytes cross
// hosts only through NATS (pkg/target/remote), and the receiving host's
// sync service writes a plain backup directory, byte-identical to the
// source's, at the plan's directory on that host (the plan's directory as
// lifeboat.yaml gives it there, {host} resolved), so the standby verifies
// and restores from its own disk, and after a failover the new active's
// plan continues in the same directory and ships the other way. A named
// target is a `dir` on this host (another disk, a mount) or on a host it
// names, at its own path ({plan} in it), with an optional bandwidth limit.
//
//   - BackupTaken on this host enqueues a transfer per target (a job of the
//     work queue, keyed by the target: one transfer per target at a time,
//     in order, retried with a backoff); BackupPruned prunes the target.
//   - A transfer sends only the chunks the target lacks (pkg/target): the
//     newest backup both hold is its base, so a backup that differs little
//     costs little; SyncCompleted carries bytes and chunks sent and the
//     lag. A failure emits SyncFailed and retries; a backup pruned at the
//     source before it was sent fails once and is dropped.
//   - At start and every ReconcileEvery, each target is checked to hold
//     its plan's newest backup, which is shipped if not (a BackupTaken
//     applied before this host held the lease; a standby's lost disk).
//   - sync.kick (addressed to each sending host: lifeboat sync kick) and a
//     HostUp for a target's host retry now; a target with work that has not
//     advanced within sync.stall_timeout gets SyncStalled and shows
//     send_error in lifeboat sync status until it advances.
package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
	"lifeboat.dev/pkg/target/remote"
	"lifeboat.dev/services/sync/internal/db"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceSync

// DefaultStallTimeout is how long a target with work may go without
// advancing before SyncStalled.
const DefaultStallTimeout = 5 * time.Minute

// workShip is the work queue's kind of a transfer or a prune.
const workShip = "ship"

// Config is what sync needs of lifeboat.yaml.
type Config struct {
	// Plans are the plans of lifeboat.yaml, by name: this host's backup
	// directory of each (where it keeps what other hosts ship to it),
	// instance and targets.
	Plans map[string]Plan
	// Instances are the declared instances: a backup of one is shipped to
	// each of its hosts but the one that took it.
	Instances instances.Config
	// StallTimeout (default DefaultStallTimeout).
	StallTimeout time.Duration
	// Backoff is the delay before a failed transfer's next attempt
	// (default: 1 s doubling to 1 min).
	Backoff func(attempt int) time.Duration
	// Bandwidth limits each standby target, in bytes a second (0: none).
	Bandwidth int64
	// Targets are the named targets (sync.targets).
	Targets map[string]Target
}

// Service is the sync service.
type Service struct {
	cfg Config
	rt  *service.Runtime

	mu     sync.Mutex
	dirs   map[[2]string]*dir.Dir   // this host's dir targets, by plan and target name
	limits map[string]*rate.Limiter // by target, for those with a bandwidth limit
}

// Spec describes the service to the runtime.
func Spec(cfg Config) (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(attempt int) time.Duration {
			return min(time.Second<<min(attempt-1, 6), time.Minute)
		}
	}
	s := &Service{cfg: cfg, dirs: map[[2]string]*dir.Dir{}, limits: map[string]*rate.Limiter{}}
	receiver := &remote.Server{Resolve: s.resolve}
	var eps []service.Endpoint
	for _, ep := range receiver.Endpoints() {
		eps = append(eps, service.Endpoint{Name: ep.Name, Handler: ep.Handler, HostScoped: true})
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat sync: ships each backup to its instance's standby hosts (content-addressed, verified there) and receives theirs",
		Migrations:  migrations,
		Init:        s.init,
		Subscriptions: []service.Subscription{
			service.On(s.handleBackupTaken),
			service.On(s.handleBackupPruned),
			service.On(s.handleHostUp),
			service.On(s.handleKick).Addressed(),
		},
		Work:      []service.WorkKind{service.Work(workShip, s.ship).WithBackoff(cfg.Backoff)},
		Endpoints: eps,
		Status:    s.status,
		Run: func(ctx context.Context) error {
			go s.reconcile(ctx)
			return s.watchStalls(ctx)
		},
	}, nil
}

func (s *Service) init(_ context.Context, rt *service.Runtime) error {
	s.rt = rt
	if t := rt.Deps.Telemetry; t != nil {
		err := t.Registry().Register(metrics{s})
		var already prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &already) {
			return fmt.Errorf("sync metrics: %w", err)
		}
	}
	return nil
}

// resolve is this host's dir target of plan for a sending host: the
// named target (sync.targets.<name>) or, for "", the plan's directory.
func (s *Service) resolve(plan, name string) (*dir.Dir, error) {
	var path string
	if name == "" {
		p, ok := s.cfg.Plans[plan]
		if !ok {
			return nil, fmt.Errorf("host %s has no plan %q in its lifeboat.yaml (backup.plans), so no directory to keep its backups in: declare the plan on every host of its instance", s.host(), plan)
		}
		path = p.Directory
	} else {
		t, ok := s.cfg.Targets[name]
		if !ok || t.Host != s.host() {
			return nil, fmt.Errorf("host %s's lifeboat.yaml declares no sync target %q on this host (sync.targets.%s with host: %s): every host reads the same sync.targets", s.host(), name, name, s.host())
		}
		path = t.PathOf(plan)
	}
	return s.local(plan, name, path), nil
}

// local is the dir target at path of plan and target name, one per
// process so that its writes are serialized.
func (s *Service) local(plan, name, path string) *dir.Dir {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{plan, name}
	if d := s.dirs[k]; d != nil && d.Path() == path {
		return d
	}
	d := dir.New(path, plan)
	s.dirs[k] = d
	return d
}

// pace is the bandwidth limit of a target, nil for none.
func (s *Service) pace(p *shipJob) func(ctx context.Context, n int) error {
	limit := s.cfg.Bandwidth
	if p.Name != "" {
		limit = s.cfg.Targets[p.Name].Bandwidth
	}
	if limit <= 0 {
		return nil
	}
	s.mu.Lock()
	l := s.limits[p.Target]
	if l == nil || l.Limit() != rate.Limit(limit) {
		// A burst of one Put at most: the limit holds over a second.
		l = rate.NewLimiter(rate.Limit(limit), int(max(limit, 1<<20)))
		s.limits[p.Target] = l
	}
	s.mu.Unlock()
	return func(ctx context.Context, n int) error { return l.WaitN(ctx, n) }
}

func (s *Service) host() string { return s.rt.Deps.Host }

// shipJob is a queued transfer (Op "send") or prune (Op "prune").
type shipJob struct {
	Op string `json:"op"`
	// Target is the target's name in status and events: the host of a
	// standby target, the name of a named one.
	Target string `json:"target"`
	// Name is a named target's name, "" for a standby target.
	Name string `json:"name,omitempty"`
	// Host is the host whose disk the target is on, "" for this one.
	Host         string    `json:"host"`
	Plan         string    `json:"plan"`
	Instance     string    `json:"instance,omitempty"`
	Backup       string    `json:"backup"`
	Dir          string    `json:"dir"`
	Kind         string    `json:"kind,omitempty"`
	Bytes        int64     `json:"bytes,omitempty"`
	ConsistentAt time.Time `json:"consistent_at,omitzero"`
}

// ships says whether this host ships what a backup event from host says
// of instance: only the host holding the backup can send it, and, for a
// declared instance, only while it holds the instance's lease (is its
// active host). A standby's catalog announces the copies it received as
// BackupTaken of its own when it rebuilds; shipping those back would undo
// the active's pruning.
func (s *Service) ships(host, instance string) bool {
	if host != s.host() {
		return false
	}
	if _, declared := s.cfg.Instances[instance]; !declared {
		return true // a plan of a host's own store
	}
	_, active := s.rt.InstanceEpoch(instance)
	return active
}

// destinations are the targets a backup of a plan listing names, of
// instance, taken on host from, goes to; and the names this host does not
// know (a plan set at run time naming a target its lifeboat.yaml lacks).
func (s *Service) destinations(names []string, instance, from string) (out []shipJob, unknown []string) {
	if len(names) == 0 {
		names = []string{Standby}
	}
	for _, name := range names {
		if name == Standby {
			inst := s.cfg.Instances[instance]
			hosts := slices.Sorted(maps.Keys(inst.Hosts))
			for _, h := range hosts {
				if h != from {
					out = append(out, shipJob{Target: h, Host: h})
				}
			}
			continue
		}
		t, ok := s.cfg.Targets[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		j := shipJob{Target: name, Name: name, Host: t.Host}
		if t.Host == from {
			j.Host = ""
		}
		out = append(out, j)
	}
	return out, unknown
}

func (s *Service) handleBackupTaken(ctx context.Context, tx *store.Tx, ev *events.BackupTaken, d service.Delivery) error {
	if !s.ships(ev.Host, ev.Instance) || ev.Dir == "" {
		return nil
	}
	now := d.Timestamp // handlers take time from the event, not the host's clock
	dests, unknown := s.destinations(ev.Targets, ev.Instance, ev.Host)
	for _, name := range unknown {
		msg := fmt.Sprintf("plan %s lists sync target %q, which host %s's lifeboat.yaml does not declare (sync.targets): declare it there, or change the plan's targets (lifeboat plan set)", ev.Plan, name, s.host())
		s.rt.Logger.WarnContext(ctx, "unknown sync target", slog.String("plan", ev.Plan), slog.String("target", name))
		if _, err := tx.Emit(ctx, &events.SyncFailed{Target: name, Plan: ev.Plan, Instance: ev.Instance, Backup: ev.Backup, Error: msg,
			BytesTotal: ev.Bytes, Attempt: 1, FailedAt: now.UTC()}); err != nil {
			return err
		}
	}
	for _, j := range dests {
		j.Op, j.Plan, j.Instance, j.Backup, j.Dir = "send", ev.Plan, ev.Instance, ev.Backup, ev.Dir
		j.Kind, j.Bytes, j.ConsistentAt = string(ev.Kind), ev.Bytes, ev.ConsistentAt
		if err := s.enqueueSend(ctx, tx, "send:"+d.ID+":"+j.Target, j, now); err != nil {
			return err
		}
	}
	return nil
}

// enqueueSend queues transfer j (id names it once) and counts it in its
// target's backlog.
func (s *Service) enqueueSend(ctx context.Context, tx *store.Tx, id string, j shipJob, now time.Time) error {
	q := db.New(tx)
	if err := q.TargetEnsure(ctx, db.TargetEnsureParams{Name: j.Target, Host: s.where(&j), Now: now.UnixMilli()}); err != nil {
		return err
	}
	if err := q.PendingAdd(ctx, db.PendingAddParams{Target: j.Target, Plan: j.Plan, Backup: j.Backup, Bytes: j.Bytes, EnqueuedAt: now.UnixMilli()}); err != nil {
		return err
	}
	_, err := tx.Enqueue(ctx, store.Work{ID: id, Kind: workShip, Key: j.Target, Owner: service.OwnerHost(s.host()), Payload: j})
	return err
}

func (s *Service) handleBackupPruned(ctx context.Context, tx *store.Tx, ev *events.BackupPruned, d service.Delivery) error {
	if !s.ships(ev.Host, ev.Instance) {
		return nil
	}
	dests, _ := s.destinations(ev.Targets, ev.Instance, ev.Host)
	for _, j := range dests {
		for _, p := range ev.Pruned {
			j.Op, j.Plan, j.Instance, j.Backup = "prune", ev.Plan, ev.Instance, p.Backup
			if _, err := tx.Enqueue(ctx, store.Work{ID: "prune:" + d.ID + ":" + j.Target + ":" + p.Backup, Kind: workShip, Key: j.Target, Owner: service.OwnerHost(s.host()), Payload: j}); err != nil {
				return err
			}
		}
	}
	return nil
}

// handleHostUp retries now what waits for the host that is back.
func (s *Service) handleHostUp(ctx context.Context, tx *store.Tx, ev *events.HostUp, _ service.Delivery) error {
	_, err := tx.WorkKick(ctx, workShip, ev.Host)
	return err
}

func (s *Service) handleKick(ctx context.Context, tx *store.Tx, ev *events.SyncKick, _ service.Delivery) error {
	key := ev.Target
	if key == "" {
		key = ev.Host // a host's dir target is named by its host
	}
	n, err := tx.WorkKick(ctx, workShip, key)
	if err == nil {
		s.rt.Logger.InfoContext(ctx, "kicked", slog.String("target", key), slog.Int64("transfers", n))
	}
	return err
}

// ship runs a transfer or a prune; a failure emits SyncFailed and is
// retried after the backoff.
func (s *Service) ship(ctx context.Context, j service.Job, p *shipJob) (service.Finish, error) {
	fin, sent, err := s.attempt(ctx, j, p)
	if err == nil {
		return fin, nil
	}
	retry := s.cfg.Backoff(j.Attempt)
	s.rt.Logger.WarnContext(ctx, p.Op+" failed; will retry", slog.String("target", p.Target), slog.String("plan", p.Plan), slog.String("backup", p.Backup),
		slog.String("error", err.Error()), slog.Int("attempt", j.Attempt), slog.Duration("retry_in", retry))
	if uerr := s.rt.DB.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		if err := db.New(tx).TargetFailed(ctx, db.TargetFailedParams{LastError: err.Error(), Name: p.Target}); err != nil {
			return err
		}
		_, err := tx.Emit(ctx, s.failed(p, err.Error(), sent, j.Attempt, retry))
		return err
	}); uerr != nil {
		s.rt.Logger.ErrorContext(ctx, "SyncFailed not recorded", slog.String("error", uerr.Error()))
	}
	return nil, err
}

// attempt runs a transfer or a prune once, returning what to record when
// it succeeded, or the bytes it sent before it failed.
func (s *Service) attempt(ctx context.Context, j service.Job, p *shipJob) (service.Finish, int64, error) {
	log := s.rt.Logger.With(slog.String("target", p.Target), slog.String("plan", p.Plan), slog.String("backup", p.Backup))
	tg, err := s.open(p)
	if err != nil {
		return nil, 0, err
	}
	if p.Op == "prune" {
		if err := tg.Prune(ctx, p.Backup); err != nil {
			return nil, 0, err
		}
		log.InfoContext(ctx, "pruned at the target as at the source")
		return func(ctx context.Context, tx *store.Tx) error {
			return db.New(tx).PendingDelete(ctx, db.PendingDeleteParams{Target: p.Target, Plan: p.Plan, Backup: p.Backup})
		}, 0, nil
	}
	start := time.Now()
	if _, err := os.Stat(filepath.Join(p.Dir, p.Backup, backup.ManifestName)); errors.Is(err, fs.ErrNotExist) {
		// Pruned at the source before it was sent: nothing to retry.
		msg := fmt.Sprintf("%s was pruned at the source (%s) before it was sent; the next backup goes instead", p.Backup, p.Dir)
		log.WarnContext(ctx, "backup gone before it was sent")
		return func(ctx context.Context, tx *store.Tx) error {
			if err := db.New(tx).PendingDelete(ctx, db.PendingDeleteParams{Target: p.Target, Plan: p.Plan, Backup: p.Backup}); err != nil {
				return err
			}
			_, err := tx.Emit(ctx, s.failed(p, msg, 0, j.Attempt, 0))
			return err
		}, 0, nil
	}
	// A full backup sends every chunk; any other (a hash backup) only
	// those the target lacks, against the newest backup both hold.
	full := p.Kind == string(events.BackupFull)
	base := ""
	if !full {
		base = s.base(ctx, tg, p)
	}
	var last time.Time
	st, err := target.Send(ctx, tg, p.Dir, p.Backup, base, target.SendOptions{Full: full, Pace: s.pace(p), Progress: func(sent, total int64) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		_ = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
			return db.New(tx).TargetProgress(ctx, db.TargetProgressParams{LastProgressAt: last.UnixMilli(), Sending: p.Backup, BytesSent: sent, BytesTotal: total, Name: p.Target})
		})
	}})
	if err != nil {
		return nil, st.BytesSent, err
	}
	now := time.Now()
	lag := now.Sub(p.ConsistentAt)
	log.InfoContext(ctx, "synced", slog.String("base", base), slog.Bool("full", full), slog.Int64("bytes_sent", st.BytesSent), slog.Int64("bytes_total", st.BytesTotal), slog.Duration("lag", lag))
	return func(ctx context.Context, tx *store.Tx) error {
		q := db.New(tx)
		if err := q.PendingDelete(ctx, db.PendingDeleteParams{Target: p.Target, Plan: p.Plan, Backup: p.Backup}); err != nil {
			return err
		}
		if err := q.TargetSynced(ctx, db.TargetSyncedParams{LastPlan: p.Plan, LastBackup: p.Backup, LastSyncedAt: now.UnixMilli(), LastLagMs: lag.Milliseconds(), LastProgressAt: now.UnixMilli(), Name: p.Target}); err != nil {
			return err
		}
		_, err := tx.Emit(ctx, &events.SyncCompleted{Target: p.Target, Plan: p.Plan, Instance: p.Instance, Backup: p.Backup, Host: s.where(p),
			BytesSent: st.BytesSent, BytesTotal: st.BytesTotal, ChunksSent: st.ChunksSent, ChunksTotal: st.ChunksTotal,
			Lag: events.Millis(lag.Milliseconds()), Duration: events.Millis(now.Sub(start).Milliseconds()), CompletedAt: now.UTC()})
		return err
	}, 0, nil
}

// where is the host whose disk a job's target is on.
func (s *Service) where(p *shipJob) string {
	if p.Host == "" {
		return s.host()
	}
	return p.Host
}

// open is the target of a job: a dir on this host, or on another host
// through its sync service.
func (s *Service) open(p *shipJob) (target.Target, error) {
	if p.Host == "" {
		t, ok := s.cfg.Targets[p.Name]
		if !ok {
			return nil, fmt.Errorf("sync target %q is no longer in this host's lifeboat.yaml (sync.targets)", p.Name)
		}
		return s.local(p.Plan, p.Name, t.PathOf(p.Plan)), nil
	}
	c := remote.NewRequester(func(ctx context.Context, endpoint string, header nats.Header, body []byte) (*nats.Msg, error) {
		return s.rt.RequestHost(ctx, p.Host, endpoint, header, body)
	}, p.Host, p.Plan)
	c.Name = p.Name
	return c, nil
}

// base is the newest backup the target holds that this host holds too,
// the same (manifest SHA-256): what a new backup is sent against.
func (s *Service) base(ctx context.Context, tg target.Target, p *shipJob) string {
	held, err := tg.List(ctx)
	if err != nil {
		return "" // Send asks again and reports the error
	}
	for i := len(held) - 1; i >= 0; i-- {
		h := held[i]
		if h.Name == p.Backup {
			continue
		}
		if sum, err := manifestSum(filepath.Join(p.Dir, h.Name)); err == nil && sum == h.ManifestSHA256 {
			return h.Name
		}
	}
	return ""
}

func (s *Service) failed(p *shipJob, msg string, sent int64, attempt int, retry time.Duration) *events.SyncFailed {
	return &events.SyncFailed{Target: p.Target, Plan: p.Plan, Instance: p.Instance, Backup: p.Backup, Host: s.where(p), Error: msg,
		BytesSent: sent, BytesTotal: p.Bytes, Attempt: attempt, RetryIn: events.Millis(retry.Milliseconds()), FailedAt: time.Now().UTC()}
}

// ReconcileEvery is how often the active host checks that each target
// holds its plan's newest backup.
const ReconcileEvery = time.Minute

// reconcile makes sure, now and every ReconcileEvery, that each target of
// each plan this host ships holds the plan's newest backup, and ships it
// if not: a BackupTaken applied before this host held the instance's
// lease (right after a restart) is not shipped when it is applied, and a
// standby whose disk was replaced holds nothing. A target with backups
// of the plan waiting is left to them.
func (s *Service) reconcile(ctx context.Context) {
	for {
		for _, name := range slices.Sorted(maps.Keys(s.cfg.Plans)) {
			if err := s.reconcilePlan(ctx, name, s.cfg.Plans[name]); err != nil && ctx.Err() == nil {
				s.rt.Logger.WarnContext(ctx, "reconcile", slog.String("plan", name), slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(ReconcileEvery):
		}
	}
}

func (s *Service) reconcilePlan(ctx context.Context, name string, p Plan) error {
	if !s.ships(s.host(), p.Instance) {
		return nil
	}
	entries, err := backup.List(p.Directory)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	newest := entries[len(entries)-1].Name
	m, err := backup.ReadManifest(p.Directory, newest)
	if err != nil {
		return nil // being pruned, or not whole: the next round sees
	}
	sum, err := manifestSum(filepath.Join(p.Directory, newest))
	if err != nil {
		return nil
	}
	dests, _ := s.destinations(p.Targets, p.Instance, s.host())
	for _, j := range dests {
		waiting, err := db.New(s.rt.DB.R).PendingCount(ctx, db.PendingCountParams{Target: j.Target, Plan: name})
		if err != nil || waiting > 0 {
			continue
		}
		j.Op, j.Plan, j.Instance, j.Backup, j.Dir = "send", name, p.Instance, newest, p.Directory
		j.Kind, j.Bytes, j.ConsistentAt = string(m.Kind), m.TotalBytes, m.ConsistentAt
		tg, err := s.open(&j)
		if err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		held, err := tg.List(rctx)
		cancel()
		if err != nil {
			// Unreachable: a BackupTaken's transfer reports that.
			s.rt.Logger.DebugContext(ctx, "reconcile: target not listed", slog.String("target", j.Target), slog.String("error", err.Error()))
			continue
		}
		if slices.ContainsFunc(held, func(h target.Held) bool { return h.Name == newest && h.ManifestSHA256 == sum }) {
			continue
		}
		s.rt.Logger.InfoContext(ctx, "target lacks the plan's newest backup; shipping it", slog.String("plan", name), slog.String("target", j.Target), slog.String("backup", newest))
		err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
			return s.enqueueSend(ctx, tx, "reconcile:"+j.Target+":"+name+":"+newest, j, time.Now())
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// watchStalls reports a target with work that has not advanced within
// the stall timeout, once, until it advances.
func (s *Service) watchStalls(ctx context.Context) error {
	tick := time.NewTicker(min(time.Second, s.cfg.StallTimeout/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rows, err := db.New(s.rt.DB.R).ListTargets(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.rt.Logger.WarnContext(ctx, "stall check", slog.String("error", err.Error()))
			continue
		}
		now := time.Now()
		for _, r := range rows {
			since := time.UnixMilli(r.LastProgressAt)
			if r.Backlog == 0 || r.Stalled != 0 || now.Sub(since) < s.cfg.StallTimeout {
				continue
			}
			err := s.rt.DB.Update(ctx, func(tx *store.Tx) error {
				n, err := db.New(tx).TargetStalled(ctx, r.Name)
				if err != nil || n == 0 {
					return err
				}
				s.rt.Logger.WarnContext(ctx, "target stalled", slog.String("target", r.Name), slog.Duration("since", now.Sub(since)), slog.String("error", r.LastError))
				_, err = tx.Emit(ctx, &events.SyncStalled{Target: r.Name, Plan: r.LastPlan, Backup: r.Oldest, Host: r.Host,
					Lag: events.Millis(now.Sub(since).Milliseconds()), StallTimeout: events.Millis(s.cfg.StallTimeout.Milliseconds()),
					LastProgressAt: since.UTC(), Error: r.LastError, BytesSent: r.BytesSent, BytesTotal: r.BytesTotal})
				return err
			})
			if err != nil && ctx.Err() == nil {
				s.rt.Logger.WarnContext(ctx, "stall not recorded", slog.String("error", err.Error()))
			}
		}
	}
}

// Status is the targets this host ships to.
func (s *Service) Status(ctx context.Context) (api.SyncStatus, error) {
	rows, err := db.New(s.rt.DB.R).ListTargets(ctx)
	if err != nil {
		return api.SyncStatus{}, err
	}
	out := api.SyncStatus{Targets: []api.SyncTarget{}, StallTimeout: s.cfg.StallTimeout.Milliseconds()}
	for _, r := range rows {
		t := api.SyncTarget{Target: r.Name, Host: r.Host, From: s.host(), LastPlan: r.LastPlan, LastBackup: r.LastBackup, Lag: r.LastLagMs,
			Backlog: r.Backlog, BacklogBytes: r.BacklogBytes, Oldest: r.Oldest, Sending: r.Sending, BytesSent: r.BytesSent, BytesTotal: r.BytesTotal,
			LastError: r.LastError, SendError: r.Stalled != 0}
		if r.LastSyncedAt > 0 {
			at := time.UnixMilli(r.LastSyncedAt).UTC()
			t.LastSynced = &at
		}
		if r.LastProgressAt > 0 {
			at := time.UnixMilli(r.LastProgressAt).UTC()
			t.LastProgress = &at
		}
		out.Targets = append(out.Targets, t)
	}
	return out, nil
}

func (s *Service) status(ctx context.Context) (any, error) { return s.Status(ctx) }

// manifestSum is the hex SHA-256 of a backup directory's MANIFEST.json.
func manifestSum(backupDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(backupDir, backup.ManifestName))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
