// Package backupscheduler is the backup-scheduler service (DESIGN §3): it
// takes consistent backups of each plan's store on the plan's rolling
// schedule, prunes them by the schedule's retention rule, keeps a catalog
// of the backups in each plan's directory, and answers backup-scheduler.take.
//
// Plans are declared in the config file (Config) and changed at run time
// through the API (plan-set, plan-disable, plan-enable); both live in the
// service database, so run-time changes survive restarts until the config
// file's declaration of the plan changes.
//
// Long work (a backup, a pruning pass, a catalog rebuild) never runs inside
// a consumed message's transaction: the take handler only records the
// command in the takes table, and the scheduler loop (Run) carries it out
// and records the outcome — the catalog row, the plan's state, the take's
// removal and the BackupTaken or BackupFailed event — in one transaction
// after the backup is complete on disk. A crash in between leaves the take
// recorded, so it is carried out again at the next start: at worst one
// extra backup, never a lost answer or a backup announced that is not there.
package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceBackupScheduler

// Plan origins, in the plans table.
const (
	originConfig  = "config"  // declared by the config file
	originAPI     = "api"     // created at run time (lifeboat plan set)
	originBuiltin = "builtin" // lifeboat-self
)

// pollEvery bounds how long the scheduler sleeps: takes recorded by the
// handler are picked up within it even if the wake-up raced the commit.
const pollEvery = time.Second

// Spec describes the service to the runtime, running the plans cfg declares.
func Spec(cfg Config) (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	s := newService(cfg)
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat backup-scheduler: takes consistent backups of each plan's store on its rolling schedule and prunes them by the schedule's retention rule",
		Migrations:  migrations,
		Init:        s.init,
		Subscriptions: []service.Subscription{
			service.On(s.handleTake),
		},
		Endpoints: s.endpoints(),
		Status:    s.status,
		Run:       s.run,
	}, nil
}

// Service is the backup-scheduler.
type Service struct {
	cfg     Config
	rt      *service.Runtime
	log     *slog.Logger
	host    string
	dataDir string
	version string

	base context.Context // the service's life: API calls end with it
	wake chan struct{}
	jobs sync.WaitGroup

	mu      sync.Mutex
	slots   map[string]chan struct{} // per plan: one job at a time
	doing   map[string]string        // plan -> what its job is doing
	rebuild map[string]bool          // plans whose catalog is rebuilt before anything else
	pruned  map[string]time.Time     // plan -> last retention pass
}

func newService(cfg Config) *Service {
	return &Service{
		cfg:     cfg,
		base:    context.Background(),
		wake:    make(chan struct{}, 1),
		slots:   map[string]chan struct{}{},
		doing:   map[string]string{},
		rebuild: map[string]bool{},
		pruned:  map[string]time.Time{},
	}
}

func (s *Service) init(ctx context.Context, rt *service.Runtime) error {
	s.rt, s.log, s.base = rt, rt.Logger, ctx
	s.host, s.dataDir, s.version = rt.Deps.Host, rt.Deps.DataDir, rt.Deps.Version
	plans, err := s.cfg.Normalize(s.dataDir)
	if err != nil {
		return fmt.Errorf("config backup: %w", err)
	}
	if err := s.applyConfig(ctx, plans); err != nil {
		return err
	}
	// The directory is the truth: every catalog is rebuilt at start, before
	// the plan's first backup or pruning pass.
	rows, err := db.New(rt.DB.R).PlanList(ctx)
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	for _, r := range rows {
		s.rebuild[r.Name] = true
	}
	return nil
}

// applyConfig brings the plans table in line with the config file: a plan
// whose declaration is new or changed since it was last applied takes the
// declaration; one whose declaration is unchanged keeps its run-time
// changes; a plan the file no longer declares is dropped (its backups are
// left on disk).
func (s *Service) applyConfig(ctx context.Context, decls []Plan) error {
	now := time.Now()
	return s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		rows, err := q.PlanList(ctx)
		if err != nil {
			return fmt.Errorf("plans: %w", err)
		}
		existing := map[string]db.Plan{}
		for _, r := range rows {
			existing[r.Name] = r
		}
		declared := map[string]bool{}
		for _, p := range decls {
			declared[p.Name] = true
			origin := originConfig
			if p.Name == SelfPlan {
				origin = originBuiltin
			}
			h := p.hash()
			old, ok := existing[p.Name]
			if ok && old.ConfigHash == h {
				continue
			}
			var prev *db.Plan
			if ok {
				prev = &old
				s.log.Info("plan: the config file changed its declaration; applying it", slog.String("plan", p.Name))
			}
			if _, err := s.putPlan(ctx, q, p, origin, h, prev, now); err != nil {
				return err
			}
		}
		for _, r := range rows {
			if r.Origin == originConfig && !declared[r.Name] {
				if err := q.PlanDelete(ctx, r.Name); err != nil {
					return fmt.Errorf("plans: %w", err)
				}
				if err := q.BackupDeletePlan(ctx, r.Name); err != nil {
					return fmt.Errorf("catalog: %w", err)
				}
				s.log.Warn("plan: no longer in the config file; dropped (its backups are left on disk)", slog.String("plan", r.Name))
			}
		}
		return checkDirectories(ctx, q)
	})
}

// checkDirectories refuses two plans sharing a backup directory.
func checkDirectories(ctx context.Context, q *db.Queries) error {
	rows, err := q.PlanList(ctx)
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	dirs := map[string]string{}
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			return err
		}
		if other, ok := dirs[p.Directory]; ok {
			return fmt.Errorf("plans %s and %s share the backup directory %s; each plan needs its own (change one with `lifeboat plan set %s --dir DIR`, or in the config file)", other, p.Name, p.Directory, p.Name)
		}
		dirs[p.Directory] = p.Name
	}
	return nil
}

// putPlan stores p's definition. When its schedule's first interval, its
// directory or its disabled flag changed, the next backup is due one new
// interval after the last attempt (at once if that is past): a changed
// schedule takes effect at once. dirChanged says the plan is new or has a
// new directory, whose catalog the caller has rebuilt once committed.
func (s *Service) putPlan(ctx context.Context, q *db.Queries, p Plan, origin, hash string, prev *db.Plan, now time.Time) (dirChanged bool, err error) {
	def, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("plan %s: %w", p.Name, err)
	}
	due := sql.NullInt64{}
	dirChanged = prev == nil
	if prev != nil {
		old, _ := decodePlan(*prev)
		dirChanged = old.Directory != p.Directory
		due = prev.NextDueAt
		if old.Spec().Every() != p.Spec().Every() || old.Disabled != p.Disabled || old.Directory != p.Directory {
			due = sql.NullInt64{}
			if prev.LastAttemptAt.Valid {
				due = sql.NullInt64{Int64: prev.LastAttemptAt.Int64 + p.Spec().Every().Milliseconds(), Valid: true}
			}
		}
		if dirChanged {
			// The old directory's backups are no longer the plan's (they are
			// left on disk); the catalog is rebuilt from the new one.
			if err := q.BackupDeletePlan(ctx, p.Name); err != nil {
				return false, fmt.Errorf("catalog: %w", err)
			}
		}
	}
	if err := q.PlanPut(ctx, db.PlanPutParams{
		Name: p.Name, Definition: string(def), Origin: origin, ConfigHash: hash, NextDueAt: due, UpdatedAt: now.UnixMilli(),
	}); err != nil {
		return false, fmt.Errorf("plan %s: %w", p.Name, err)
	}
	return dirChanged, nil
}

// decodePlan reads a plan row's definition.
func decodePlan(r db.Plan) (Plan, error) {
	var p Plan
	if err := json.Unmarshal([]byte(r.Definition), &p); err != nil {
		return p, fmt.Errorf("plan %s: stored definition unreadable: %w", r.Name, err)
	}
	return p, nil
}

// loadPlan reads one plan; ok is false when there is none.
func (s *Service) loadPlan(ctx context.Context, name string) (Plan, db.Plan, bool, error) {
	r, err := db.New(s.rt.DB.R).PlanGet(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return Plan{}, r, false, nil
	}
	if err != nil {
		return Plan{}, r, false, fmt.Errorf("plan %s: %w", name, err)
	}
	p, err := decodePlan(r)
	return p, r, err == nil, err
}

// poke wakes the scheduler loop.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// slot is plan's one-job-at-a-time token.
func (s *Service) slot(plan string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.slots[plan]
	if !ok {
		c = make(chan struct{}, 1)
		s.slots[plan] = c
	}
	return c
}

// start runs job for plan in the background unless the plan is busy.
func (s *Service) start(ctx context.Context, plan, what string, job func(ctx context.Context)) {
	c := s.slot(plan)
	select {
	case c <- struct{}{}:
	default:
		return
	}
	s.setDoing(plan, what)
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		defer s.poke()
		defer func() { s.setDoing(plan, ""); <-c }()
		job(ctx)
	}()
}

// withPlan runs fn while holding plan's slot, waiting for a running job.
func (s *Service) withPlan(ctx context.Context, plan, what string, fn func() error) error {
	c := s.slot(plan)
	select {
	case c <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("plan %s is busy (%s): %w", plan, s.getDoing(plan), ctx.Err())
	}
	s.setDoing(plan, what)
	defer func() { s.setDoing(plan, ""); <-c; s.poke() }()
	return fn()
}

func (s *Service) setDoing(plan, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if what == "" {
		delete(s.doing, plan)
	} else {
		s.doing[plan] = what
	}
}

func (s *Service) getDoing(plan string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doing[plan]
}

// run is the scheduler loop: it starts each plan's due backup, its pending
// takes, its catalog rebuild and its retention pass, one job per plan at a
// time, until ctx ends; then it waits for the jobs, which a cancelled
// context stops (a backup cut short leaves only a temporary directory).
func (s *Service) run(ctx context.Context) error {
	defer s.jobs.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		wait := s.tick(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// tick starts what is due now and returns how long to sleep.
func (s *Service) tick(ctx context.Context) time.Duration {
	q := db.New(s.rt.DB.R)
	rows, err := q.PlanList(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("scheduler: reading plans", slog.String("error", err.Error()))
		}
		return pollEvery
	}
	takes, err := q.TakeList(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("scheduler: reading takes", slog.String("error", err.Error()))
		}
		return pollEvery
	}
	pending := map[string][]db.Take{}
	known := map[string]bool{}
	for _, r := range rows {
		known[r.Name] = true
	}
	for _, t := range takes {
		if !known[t.Plan] {
			// The plan was dropped after the take was recorded.
			s.start(ctx, t.Plan, "answering a take", func(ctx context.Context) { s.runTakes(ctx, t.Plan, []db.Take{t}) })
			continue
		}
		pending[t.Plan] = append(pending[t.Plan], t)
	}
	now := time.Now()
	wait := pollEvery
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			s.log.Error("scheduler", slog.String("error", err.Error()))
			continue
		}
		name := p.Name
		s.mu.Lock()
		needRebuild, lastPrune := s.rebuild[name], s.pruned[name]
		s.mu.Unlock()
		switch {
		case needRebuild:
			s.start(ctx, name, "rebuilding the catalog", func(ctx context.Context) { s.startupRebuild(ctx, name) })
			continue
		case len(pending[name]) > 0:
			ts := pending[name]
			s.start(ctx, name, "taking a requested backup", func(ctx context.Context) { s.runTakes(ctx, name, ts) })
			continue
		case p.Disabled:
			continue
		}
		every := p.Spec().Every()
		due := now
		if r.NextDueAt.Valid {
			due = time.UnixMilli(r.NextDueAt.Int64)
		}
		if !due.After(now) {
			s.start(ctx, name, "taking a scheduled backup", func(ctx context.Context) { s.runScheduled(ctx, name) })
			continue
		}
		wait = min(wait, due.Sub(now))
		// Retention also runs on a timer, so backups age out while backups
		// fail (the min_keep guard keeps the last good one).
		if next := lastPrune.Add(every); !next.After(now) {
			s.start(ctx, name, "pruning", func(ctx context.Context) { s.runPrune(ctx, name) })
		} else {
			wait = min(wait, next.Sub(now))
		}
	}
	return max(wait, time.Millisecond)
}

// startupRebuild rebuilds a plan's catalog (at start, or after its directory
// changed).
func (s *Service) startupRebuild(ctx context.Context, name string) {
	p, _, ok, err := s.loadPlan(ctx, name)
	if err != nil || !ok {
		s.mu.Lock()
		delete(s.rebuild, name)
		s.mu.Unlock()
		return
	}
	res, err := s.rebuildCatalog(ctx, p, false)
	if ctx.Err() != nil {
		return // shutting down: rebuilt at the next start
	}
	// Done, even when it failed: the plan's backups go on (their own
	// failures are reported), and `lifeboat backup list --rescan` retries.
	s.mu.Lock()
	delete(s.rebuild, name)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("catalog: rebuild failed", slog.String("plan", name), slog.String("dir", p.Directory), slog.String("error", err.Error()))
		return
	}
	s.log.Info("catalog rebuilt from the directory", slog.String("plan", name), slog.String("dir", p.Directory),
		slog.Int("backups", res.Total), slog.Int("added", res.Added), slog.Int("removed", res.Removed), slog.Int("invalid", res.Invalid))
}

// nextDue is when the backup after one due at due and started at started
// is due: one interval after due, keeping the cadence, or, when that is
// already past (downtime, a backup longer than the interval), one interval
// after started — so an overdue plan takes one backup at once, never a
// burst of catch-up backups.
func nextDue(due, started time.Time, every time.Duration) time.Time {
	next := due.Add(every)
	if !next.After(started) {
		next = started.Add(every)
	}
	return next
}

// runScheduled takes the plan's scheduled backup if it is still due, records
// the outcome and prunes.
func (s *Service) runScheduled(ctx context.Context, name string) {
	p, r, ok, err := s.loadPlan(ctx, name)
	if err != nil || !ok || p.Disabled {
		return
	}
	started := time.Now()
	due := started
	if r.NextDueAt.Valid {
		due = time.UnixMilli(r.NextDueAt.Int64)
		if due.After(started) {
			return // changed since the tick
		}
	}
	res := s.takeBackup(ctx, p, events.BackupScheduled)
	if res.err != nil && ctx.Err() != nil {
		// Shutting down: not a failure of the plan; still due at the next start.
		return
	}
	next := nextDue(due, started, p.Spec().Every())
	if err := s.record(ctx, p, res, "", func(q *db.Queries) error {
		return q.PlanAttempted(ctx, db.PlanAttemptedParams{
			LastAttemptAt: sql.NullInt64{Int64: started.UnixMilli(), Valid: true},
			NextDueAt:     sql.NullInt64{Int64: next.UnixMilli(), Valid: true},
			Name:          p.Name,
		})
	}); err != nil {
		s.log.Error("recording a backup's outcome", slog.String("plan", p.Name), slog.String("error", err.Error()))
		return
	}
	s.prunePlan(ctx, name)
}

// runTakes carries out recorded takes of one plan, oldest first.
func (s *Service) runTakes(ctx context.Context, name string, takes []db.Take) {
	for _, t := range takes {
		if ctx.Err() != nil {
			return
		}
		p, _, ok, err := s.loadPlan(ctx, name)
		if err != nil {
			return
		}
		var res result
		switch {
		case !ok:
			res = failed(events.BackupKind(t.Kind), "plan", fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", t.Plan))
			p = Plan{Name: t.Plan}
		case p.Disabled:
			res = failed(events.BackupKind(t.Kind), "plan", fmt.Errorf("plan %s is disabled, so it takes no backups (enable it with `lifeboat plan enable %s`)", p.Name, p.Name))
		default:
			res = s.takeBackup(ctx, p, events.BackupKind(t.Kind))
			if res.err != nil && ctx.Err() != nil {
				return // shutting down: the take is carried out at the next start
			}
		}
		if err := s.record(ctx, p, res, t.RequestID, func(q *db.Queries) error {
			return q.TakeDelete(ctx, t.RequestID)
		}); err != nil {
			s.log.Error("recording a take's outcome", slog.String("plan", name), slog.String("error", err.Error()))
			return
		}
		if ok && res.err == nil {
			s.prunePlan(ctx, name)
		}
	}
}

// runPrune is the retention timer's pass.
func (s *Service) runPrune(ctx context.Context, name string) {
	s.prunePlan(ctx, name)
}

// prunePlan runs the plan's retention pass, logging a failure (the next
// pass retries).
func (s *Service) prunePlan(ctx context.Context, name string) {
	p, _, ok, err := s.loadPlan(ctx, name)
	if err != nil || !ok {
		return
	}
	if _, err := s.prune(ctx, p); err != nil && ctx.Err() == nil {
		s.log.Error("pruning failed; the next pass retries", slog.String("plan", name), slog.String("error", err.Error()))
	}
}
