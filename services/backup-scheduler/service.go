// Package backupscheduler is the backup-scheduler service (DESIGN §3): it
// takes consistent backups of each plan's store on the plan's rolling
// schedule, prunes them by the schedule's retention rule, keeps a catalog
// of the backups in each plan's directory, and answers backup-scheduler.take.
//
// Plans are declared in the config file (Config) and changed at run time
// through the API (plan-set, plan-disable, plan-enable), which emits each
// change as PlanChanged for every host's handler to apply (planset.go).
// The changes are the service's replicated state (plan_changes, alike on
// every host); the plans each host runs, the config's declarations with
// the changes and this host's paths, are its own (plans, planchanges.go),
// so run-time changes survive restarts until the config file's
// declaration of the plan changes (plans.go).
//
// Long work (a backup, a pruning pass, a catalog rebuild) never runs inside
// a consumed message's transaction: it is a job of the runtime's durable
// work queue (jobs.go). Every job of a plan is queued with the kind "plan"
// and the plan's name as its key, so the queue runs one job per plan at a
// time, in the order they were queued: a take (queued by the take handler
// in its transaction, handlers.go), the scheduled backup of one due time, a
// retention pass, a catalog rebuild (queued by the scheduler,
// scheduler.go), and an API call that must not race the plan's backups
// (withPlan). A job's outcome — the catalog row, the plan's state and the
// BackupTaken or BackupFailed event — commits in the transaction that
// removes the job, after the backup is complete on disk (take.go). A crash
// in between leaves the job queued, so it runs again at the next start:
// never a lost answer, never a backup announced that is not there.
//
// Time that decides behaviour (when a plan is due, the retention timer, the
// backups' names) comes from the runtime's clock (service.Deps.Now), so
// tests drive the schedule with a fake clock.
package backupscheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceBackupScheduler

// Spec describes the service to the runtime, running the plans cfg declares.
func Spec(cfg Config) (service.Spec, error) {
	spec, _, err := newSpec(cfg)
	return spec, err
}

// newSpec is Spec with the service it runs, for tests that reach into it.
func newSpec(cfg Config) (service.Spec, *Service, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, nil, err
	}
	s := newService(cfg)
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat backup-scheduler: takes consistent backups of each plan's store on its rolling schedule and prunes them by the schedule's retention rule",
		Migrations:  migrations,
		// What the PlanChanged events said, alike on every host; the plans
		// this host runs, its catalog and its scheduler state are its own
		// (planchanges.go).
		Replicated: []string{"plan_changes"},
		Init:       s.init,
		Subscriptions: []service.Subscription{
			service.On(s.handleTake),
			service.On(s.handleTake).Addressed(),
			service.On(s.handlePlanChanged),
		},
		Work:      []service.WorkKind{service.Work(jobKind, s.runJob)},
		Endpoints: s.endpoints(),
		Status:    s.status,
		// The scheduler; the runtime runs it with rt.Go, so it ends before
		// the database closes and its failure stops the service.
		Run: s.schedule,
	}, s, nil
}

// Service is the backup-scheduler.
type Service struct {
	cfg     Config
	rt      *service.Runtime
	log     *slog.Logger
	host    string
	dataDir string
	version string
	clock   func() time.Time

	wake chan struct{} // wakes the scheduler

	mu         sync.Mutex
	doing      map[string]string     // plan -> what its running job is doing
	rebuild    map[string]bool       // plans whose catalog is rebuilt before their next job
	pruned     map[string]time.Time  // plan -> last retention pass
	holds      map[string]*hold      // hold job id -> the API call waiting for it (withPlan)
	unreadable map[string]bool       // plans whose stored definition was reported unreadable
	applying   map[string]chan error // PlanChanged id -> the API call waiting for this host to apply it
}

func newService(cfg Config) *Service {
	return &Service{
		cfg:        cfg,
		clock:      time.Now,
		log:        slog.Default(),
		wake:       make(chan struct{}, 1),
		doing:      map[string]string{},
		rebuild:    map[string]bool{},
		pruned:     map[string]time.Time{},
		holds:      map[string]*hold{},
		unreadable: map[string]bool{},
		applying:   map[string]chan error{},
	}
}

// bind attaches the service to its runtime: its database, logger, host and
// clock. Tests of the handlers bind a runtime holding only a database.
func (s *Service) bind(rt *service.Runtime) {
	s.rt = rt
	if rt.Logger != nil {
		s.log = rt.Logger
	}
	s.host, s.dataDir, s.version = rt.Deps.Host, rt.Deps.DataDir, rt.Deps.Version
	if rt.Deps.Now != nil {
		s.clock = rt.Deps.Now
	}
}

func (s *Service) init(ctx context.Context, rt *service.Runtime) error {
	s.bind(rt)
	plans, err := s.cfg.Normalize(s.dataDir)
	if err != nil {
		return fmt.Errorf("config backup: %w", err)
	}
	if err := s.applyConfig(ctx, plans); err != nil {
		return err
	}
	// The directory is the truth: every catalog is rebuilt at start, before
	// the plan's first backup or pruning pass (the first job of each plan
	// does it, whichever it is; the scheduler queues a rebuild job so that
	// it happens even when nothing else is due).
	rows, err := db.New(rt.DB.R).PlanList(ctx)
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	s.mu.Lock()
	for _, r := range rows {
		s.rebuild[r.Name] = true
	}
	s.mu.Unlock()
	return nil
}

// now is the service's clock: the runtime's (Deps.Now), else time.Now.
func (s *Service) now() time.Time { return s.clock() }

// poke wakes the scheduler: a plan changed, a job ended, the clock moved.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
