package backupscheduler

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The workers: every plan's long work is a job of the runtime's work queue.
//
// All of a plan's jobs have the kind jobKind and the plan's name as their
// key: the queue runs one job of a kind and key at a time, in the order
// they were queued, so one job per plan runs at a time — a backup, a
// retention pass, a catalog rebuild and an API call holding the plan never
// overlap — while different plans' jobs run side by side (up to the
// queue's concurrency per kind, 4).
//
// Who runs a job: the backups (a take, a scheduled backup) of a plan whose
// instance the instances section declares are owned by the instance
// (service.OwnerInstance): only the host holding its lease, the active
// host, runs them, and records the lease's epoch in the manifest and in
// BackupTaken. Every other job is this host's own (service.OwnerHost):
// the backups of a plan of each host's own store, and, for every plan,
// the retention passes, catalog rebuilds and API holds, which work on the
// files in this host's directory. Retention therefore runs wherever a
// plan's backups are: a host that lost an instance's lease keeps pruning
// the backups it took while it held it (they age out by the plan's rule,
// min_keep still guards the newest), and the new holder prunes its own.
// An instance's backup left queued on a host that no longer holds the
// lease would block the plan's key there (the queue runs a key's jobs in
// order): the scheduler drops it (dropUnheld).
//
// A job does its long work outside any transaction and returns a Finish,
// which commits its outcome in the transaction that removes the job. A job
// cut short by a shutdown is given back and runs again at the next start;
// one cut short by a crash too (then j.Attempt > 1).

// jobKind is the work queue kind of every plan job (the migration that
// carried the takes table over names it too).
const jobKind = "plan"

// Operations of a plan job.
const (
	opTake      = "take"      // a backup-scheduler.take, answered with its request id
	opScheduled = "scheduled" // the scheduled backup of one due time
	opPrune     = "prune"     // a retention pass
	opRebuild   = "rebuild"   // a catalog rebuild (at start, after a new directory)
	opHold      = "hold"      // an API call holding the plan (withPlan)
)

// planJob is a plan job's payload.
type planJob struct {
	Op   string `json:"op"`
	Plan string `json:"plan"`
	// A take's.
	Kind      events.BackupKind `json:"kind,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	// Due is the due time (unix ms) a scheduled job serves.
	Due int64 `json:"due,omitempty"`
}

// job is the queue entry of p, named id, run by this host.
func (s *Service) job(id string, p planJob) store.Work {
	return store.Work{ID: id, Kind: jobKind, Key: p.Plan, Owner: service.OwnerHost(s.host), Payload: p}
}

// backupJob is the queue entry of a backup (p, named id) of plan pl: run
// by the host holding the lease of pl's instance when the instances
// section declares it, else by this host.
func (s *Service) backupJob(id string, pl Plan, p planJob) store.Work {
	w := s.job(id, p)
	if s.cfg.leaseBound(pl) {
		w.Owner = service.OwnerInstance(pl.Instance)
	}
	return w
}

// tenure is the epoch a backup of p taken now records: the epoch of this
// host's lease of p's instance when p is an instance's plan (held is false
// when this host does not hold it), 0 otherwise.
func (s *Service) tenure(p Plan) (epoch uint64, held bool) {
	if !s.cfg.leaseBound(p) {
		return 0, true
	}
	return s.rt.InstanceEpoch(p.Instance)
}

// notHolder is why this host does not back up p, an instance's plan whose
// lease it does not hold.
func (s *Service) notHolder(p Plan) error {
	return fmt.Errorf("host %s does not hold instance %s's lease, so it does not back up plan %s: the instance's active host does (lifeboat status shows it; `lifeboat backup take %s` sends the command there)",
		s.host, p.Instance, p.Name, p.Name)
}

// runJob is the worker of every plan job.
func (s *Service) runJob(ctx context.Context, j service.Job, p *planJob) (service.Finish, error) {
	if p.Plan == "" {
		p.Plan = j.Key
	}
	if p.Op == opHold {
		return s.runHold(ctx, j)
	}
	defer s.setDoing(p.Plan, "")
	if err := s.ensureRebuilt(ctx, p.Plan); err != nil {
		return nil, err
	}
	switch p.Op {
	case opTake:
		s.setDoing(p.Plan, "taking a requested backup")
		return s.runTake(ctx, p)
	case opScheduled:
		s.setDoing(p.Plan, "taking a scheduled backup")
		return s.runScheduled(ctx, j, p)
	case opPrune:
		s.setDoing(p.Plan, "pruning")
		return s.runPrune(ctx, p.Plan)
	case opRebuild:
		return s.finish(nil), nil // ensureRebuilt did it
	}
	s.log.ErrorContext(ctx, "job: unknown operation; dropped", slog.String("job", j.ID), slog.String("op", p.Op))
	return s.finish(nil), nil
}

// finish is a job's outcome: f (may be nil) and, once it committed, a
// wake-up of the scheduler (the plan's next due time or retention pass may
// have moved).
func (s *Service) finish(f service.Finish) service.Finish {
	return func(ctx context.Context, tx *store.Tx) error {
		tx.AfterCommit(s.poke)
		if f == nil {
			return nil
		}
		return f(ctx, tx)
	}
}

// queuePrune queues a retention pass of plan after the current job.
func (s *Service) queuePrune(ctx context.Context, tx *store.Tx, plan string) error {
	_, err := tx.Enqueue(ctx, s.job("prune:"+plan, planJob{Op: opPrune, Plan: plan}))
	return err
}

// ensureRebuilt rebuilds the plan's catalog from its directory if that is
// still to be done (at start, or after its directory changed). It fails
// only when ctx ends (then the rebuild is still to be done).
func (s *Service) ensureRebuilt(ctx context.Context, name string) error {
	s.mu.Lock()
	need := s.rebuild[name]
	// Taken now: a directory change committed while this rebuild runs asks
	// for another one.
	delete(s.rebuild, name)
	s.mu.Unlock()
	if !need {
		return nil
	}
	p, _, ok, err := s.loadPlan(ctx, name)
	if err != nil {
		s.reportUnreadable(ctx, name, err)
		return nil
	}
	if !ok {
		return nil
	}
	s.setDoing(name, "rebuilding the catalog")
	res, err := s.rebuildCatalog(ctx, p, false)
	if ctx.Err() != nil {
		// Shutting down: rebuilt at the next start.
		s.mu.Lock()
		s.rebuild[name] = true
		s.mu.Unlock()
		return ctx.Err()
	}
	// Done, even when it failed: the plan's backups go on (their own
	// failures are reported), and `lifeboat backup list --rescan` retries.
	if err != nil {
		s.log.ErrorContext(ctx, "catalog: rebuild failed", slog.String("plan", name), slog.String("dir", p.Directory), slog.String("error", err.Error()))
		return nil
	}
	s.log.InfoContext(ctx, "catalog rebuilt from the directory", slog.String("plan", name), slog.String("dir", p.Directory),
		slog.Int("backups", res.Total), slog.Int("added", res.Added), slog.Int("removed", res.Removed), slog.Int("invalid", res.Invalid))
	return nil
}

// runTake carries out a backup-scheduler.take and answers it.
func (s *Service) runTake(ctx context.Context, j *planJob) (service.Finish, error) {
	kind := j.Kind
	if kind == "" {
		kind = events.BackupManual
	}
	p, _, ok, err := s.loadPlan(ctx, j.Plan)
	var res result
	switch {
	case err != nil:
		res, p = s.failed(kind, "plan", err), Plan{Name: j.Plan}
	case !ok:
		// The plan was dropped after the take was queued.
		res, p = s.failed(kind, "plan", fmt.Errorf("no plan named %q on host %s (lifeboat plan list shows the plans)", j.Plan, s.host)), Plan{Name: j.Plan}
	case p.Disabled:
		res = s.failed(kind, "plan", fmt.Errorf("plan %s is disabled, so it takes no backups (enable it with `lifeboat plan enable %s`)", p.Name, p.Name))
	default:
		epoch, held := s.tenure(p)
		if !held {
			// The lease was lost since the take was queued.
			res = s.failed(kind, "plan", s.notHolder(p))
			break
		}
		res = s.takeBackup(ctx, p, kind, s.now(), epoch)
		if res.err != nil && ctx.Err() != nil {
			return nil, ctx.Err() // shutting down: carried out at the next start
		}
	}
	return s.finish(func(ctx context.Context, tx *store.Tx) error {
		if err := s.record(ctx, tx, p, res, j.RequestID); err != nil {
			return err
		}
		if ok && res.err == nil {
			return s.queuePrune(ctx, tx, p.Name)
		}
		return nil
	}), nil
}

// runScheduled takes the plan's scheduled backup for the due time j.Due,
// if the plan is still due then, records the outcome and the next due
// time, and queues a retention pass.
func (s *Service) runScheduled(ctx context.Context, job service.Job, j *planJob) (service.Finish, error) {
	p, r, ok, err := s.loadPlan(ctx, j.Plan)
	if err != nil {
		s.reportUnreadable(ctx, j.Plan, err)
		return s.finish(nil), nil
	}
	if !ok || p.Disabled || !r.NextDueAt.Valid || r.NextDueAt.Int64 != j.Due {
		// The plan was dropped, disabled or rescheduled since the job was
		// queued: this due time is no more (the scheduler queues the new one).
		return s.finish(nil), nil
	}
	epoch, held := s.tenure(p)
	if !held {
		// This host lost the instance's lease since the job was queued:
		// the new holder takes the instance's backups.
		return s.finish(nil), nil
	}
	due, every := time.UnixMilli(j.Due), p.Spec().Every()
	attempted := func(started time.Time) func(ctx context.Context, q *db.Queries) error {
		return func(ctx context.Context, q *db.Queries) error {
			return q.PlanAttempted(ctx, db.PlanAttemptedParams{
				LastAttemptAt: sql.NullInt64{Int64: started.UnixMilli(), Valid: true},
				NextDueAt:     sql.NullInt64{Int64: nextDue(due, started, every).UnixMilli(), Valid: true},
				Name:          p.Name,
			})
		}
	}
	if job.Attempt > 1 {
		// Run again after a crash: the first run may have written its
		// backup and died before recording it. The catalog rebuild has
		// announced it since; it serves this due time.
		got, err := db.New(s.rt.DB.R).PlanScheduledSince(ctx, db.PlanScheduledSinceParams{Plan: p.Name, TakenAt: j.Due})
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		if len(got) > 0 {
			s.log.InfoContext(ctx, "scheduled backup: an earlier run took it before a crash; not taking another",
				slog.String("plan", p.Name), slog.String("backup", got[0].Name))
			return s.finish(func(ctx context.Context, tx *store.Tx) error {
				if err := attempted(time.UnixMilli(got[0].TakenAt))(ctx, db.New(tx)); err != nil {
					return err
				}
				return s.queuePrune(ctx, tx, p.Name)
			}), nil
		}
	}
	started := s.now()
	res := s.takeBackup(ctx, p, scheduledKind, started, epoch)
	if res.err != nil && ctx.Err() != nil {
		// Shutting down: not a failure of the plan; still due at the next start.
		return nil, ctx.Err()
	}
	return s.finish(func(ctx context.Context, tx *store.Tx) error {
		if err := s.record(ctx, tx, p, res, ""); err != nil {
			return err
		}
		if err := attempted(started)(ctx, db.New(tx)); err != nil {
			return err
		}
		return s.queuePrune(ctx, tx, p.Name)
	}), nil
}

// scheduledKind is the kind of the schedule's own backups.
const scheduledKind = events.BackupScheduled

// runPrune is a retention pass of the plan. The pass (retain.go) commits
// its own decisions and BackupPruned, then deletes: run again after a
// crash, it finds those backups marked and only finishes their deletion,
// so each is announced once.
func (s *Service) runPrune(ctx context.Context, name string) (service.Finish, error) {
	p, _, ok, err := s.loadPlan(ctx, name)
	if err != nil {
		s.reportUnreadable(ctx, name, err)
		return s.finish(nil), nil
	}
	if !ok {
		return s.finish(nil), nil
	}
	_, err = s.prune(ctx, p)
	// The retention timer runs on the service's clock.
	s.mu.Lock()
	s.pruned[name] = s.now()
	s.mu.Unlock()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		s.log.ErrorContext(ctx, "pruning failed; the next pass retries", slog.String("plan", name), slog.String("error", err.Error()))
	}
	return s.finish(nil), nil
}

// hold is an API call waiting for, then holding, its plan (withPlan).
type hold struct {
	granted  chan struct{} // closed by the job: the plan is the caller's
	released chan struct{} // closed by the caller: done with it
}

// withPlan runs fn while no other job of plan runs: it queues a hold job
// on the plan's key and runs fn once the queue starts it, the job waiting
// until fn returns. That is safe because the queue runs one job per plan
// at a time: a backup, a pruning pass or a rebuild of the plan queued
// before the call has finished when fn starts, and one queued after it
// waits for fn. What is recorded is only the hold job (the call itself
// lives in memory), so a hold job left by a crash finds no caller at the
// next start and ends at once; a caller that gives up (ctx) leaves its job
// to end the same way.
func (s *Service) withPlan(ctx context.Context, plan, what string, fn func() error) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "hold:" + plan + ":" + hex.EncodeToString(b[:])
	h := &hold{granted: make(chan struct{}), released: make(chan struct{})}
	s.mu.Lock()
	s.holds[id] = h
	s.mu.Unlock()
	defer close(h.released)
	err := s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Enqueue(ctx, s.job(id, planJob{Op: opHold, Plan: plan}))
		return err
	})
	if err != nil {
		s.mu.Lock()
		delete(s.holds, id)
		s.mu.Unlock()
		return err
	}
	select {
	case <-h.granted:
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.holds, id) // if the job took it meanwhile, the deferred release ends it
		s.mu.Unlock()
		return fmt.Errorf("plan %s is busy (%s): %w", plan, s.getDoing(plan), ctx.Err())
	}
	s.setDoing(plan, what)
	defer s.setDoing(plan, "")
	return fn()
}

// runHold is a hold job: it hands the plan to its waiting caller and ends
// when the caller is done.
func (s *Service) runHold(ctx context.Context, j service.Job) (service.Finish, error) {
	s.mu.Lock()
	h := s.holds[j.ID]
	delete(s.holds, j.ID)
	s.mu.Unlock()
	if h == nil {
		return s.finish(nil), nil // its caller gave up, or lived before a restart
	}
	close(h.granted)
	select {
	case <-h.released:
		return s.finish(nil), nil
	case <-ctx.Done():
		// Shutting down: the caller's context ends too (it is the
		// service's); the job is given back and ends at the next start.
		return nil, ctx.Err()
	}
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
