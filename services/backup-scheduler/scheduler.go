package backupscheduler

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The scheduler decides when a plan's work is due and queues it; the work
// queue runs it (jobs.go). It runs nothing itself.

// maxSleep bounds the scheduler's sleep, so that a jump of the wall clock
// is noticed within it. Whatever makes work due sooner wakes it at once: a
// plan changed (poke), a job ended (its Finish pokes after commit), the
// clock moved (a test's fake clock pokes).
const maxSleep = time.Minute

// leaseRecheck bounds the scheduler's sleep while an instance's plan is
// not held here: whether this host holds a lease is polled (the runtime
// does not announce it), so a host that takes over an instance starts its
// backups within it, and one that lost it drops the backups it had queued.
const leaseRecheck = 2 * time.Second

// schedule is the scheduler loop: until ctx ends, it queues each plan's
// due work and sleeps until the next is due or something wakes it.
func (s *Service) schedule(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		wait, err := s.tick(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.ErrorContext(ctx, "scheduler: queueing due work failed; retrying", slog.String("error", err.Error()))
			wait = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// dueWork is a job the scheduler queues, and for a new plan the due time
// it fixes.
type dueWork struct {
	work   store.Work
	fixDue sql.NullInt64
}

// tick queues what is due now and returns how long to sleep.
func (s *Service) tick(ctx context.Context) (time.Duration, error) {
	if err := s.catchUpChanges(ctx); err != nil {
		return 0, fmt.Errorf("plan changes: %w", err)
	}
	now := s.now()
	rows, err := db.New(s.rt.DB.R).PlanList(ctx)
	if err != nil {
		return 0, err
	}
	due, unheld, wait := s.dueNow(ctx, rows, now)
	if len(unheld) > 0 {
		if err := s.dropUnheld(ctx, unheld); err != nil {
			return 0, err
		}
	}
	if len(due) == 0 {
		return wait, nil
	}
	// Queueing what is queued already does nothing (a job's id names its
	// cause), so a tick that finds the same plan due again is harmless;
	// the rows read above may be stale by now, and the job checks, when it
	// runs, that the plan is still due at the time it was queued for.
	err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		for _, d := range due {
			if d.fixDue.Valid {
				if err := q.PlanDueAt(ctx, db.PlanDueAtParams{NextDueAt: d.fixDue, Name: d.work.Key}); err != nil {
					return err
				}
			}
			if _, err := tx.Enqueue(ctx, d.work); err != nil {
				return err
			}
		}
		return nil
	})
	return wait, err
}

// dueNow is what the plans need at now — a catalog rebuild, the scheduled
// backup of a due time, a retention pass — and how long until the next
// thing is due. An instance's plan whose lease this host does not hold
// takes no backup here (its active host takes them) but still has its
// catalog rebuilt and its retention passes, over the backups this host's
// directory holds; unheld lists those instances.
func (s *Service) dueNow(ctx context.Context, rows []db.Plan, now time.Time) ([]dueWork, map[string]bool, time.Duration) {
	wait := maxSleep
	var out []dueWork
	unheld := map[string]bool{}
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			s.reportUnreadable(ctx, r.Name, err)
			continue
		}
		name := p.Name
		s.mu.Lock()
		needRebuild, lastPrune := s.rebuild[name], s.pruned[name]
		s.mu.Unlock()
		if needRebuild {
			out = append(out, dueWork{work: s.job("rebuild:"+name, planJob{Op: opRebuild, Plan: name})})
		}
		if p.Disabled {
			continue // takes nothing, deletes nothing
		}
		every := p.Spec().Every()
		prune := func() {
			// Retention also runs on a timer, so backups age out while
			// backups fail (the min_keep guard keeps the last good one).
			if next := lastPrune.Add(every); !next.After(now) {
				out = append(out, dueWork{work: s.job("prune:"+name, planJob{Op: opPrune, Plan: name})})
			} else {
				wait = min(wait, next.Sub(now))
			}
		}
		if _, held := s.tenure(p); !held {
			unheld[p.Instance] = true
			wait = min(wait, leaseRecheck)
			prune()
			continue
		}
		at := now
		var fix sql.NullInt64
		if r.NextDueAt.Valid {
			at = time.UnixMilli(r.NextDueAt.Int64)
		} else {
			// A new plan is due at once; the due time is fixed in the plan
			// so that its job has one id.
			fix = sql.NullInt64{Int64: now.UnixMilli(), Valid: true}
		}
		if !at.After(now) {
			// One job per due time: a crash while it runs leaves it queued
			// under the same id, so it is run again, never queued twice.
			ms := at.UnixMilli()
			out = append(out, dueWork{
				work:   s.backupJob("scheduled:"+name+":"+strconv.FormatInt(ms, 10), p, planJob{Op: opScheduled, Plan: name, Due: ms}),
				fixDue: fix,
			})
			continue // the scheduled job queues a retention pass after it
		}
		wait = min(wait, at.Sub(now))
		prune()
	}
	return out, unheld, max(wait, time.Millisecond)
}

// dropUnheld removes from this host's queue the backups of the instances
// in unheld that wait here (queued while this host held the lease, which
// it has lost since): they would never run here, and would hold up the
// plan's later jobs (retention, rebuilds, API calls) for ever. A dropped
// take is answered with BackupFailed; a dropped scheduled backup is the
// new holder's to take. A backup already running finishes, under the
// epoch it started in.
func (s *Service) dropUnheld(ctx context.Context, unheld map[string]bool) error {
	jobs, err := s.rt.DB.Jobs(ctx, 100000)
	if err != nil {
		return err
	}
	var drop []store.QueuedJob
	for _, j := range jobs {
		inst, ok := strings.CutPrefix(j.Owner, service.OwnerInstance(""))
		if !ok || j.Kind != jobKind || j.Running || !unheld[inst] {
			continue
		}
		if _, held := s.rt.InstanceEpoch(inst); held {
			continue // taken (back) meanwhile: the queue runs it
		}
		drop = append(drop, j)
	}
	if len(drop) == 0 {
		return nil
	}
	now := s.now()
	return s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		for _, j := range drop {
			inst := strings.TrimPrefix(j.Owner, service.OwnerInstance(""))
			gone, err := tx.WorkDone(ctx, j.ID)
			if err != nil || !gone {
				return err
			}
			tx.AfterCommit(func() {
				s.log.WarnContext(ctx, "plan: this host lost the instance's lease; a backup it had queued is dropped (the new active host takes the instance's backups)",
					slog.String("plan", j.Key), slog.String("instance", inst), slog.String("job", j.ID))
			})
			reqID, isTake := strings.CutPrefix(j.ID, "take:")
			if !isTake {
				continue
			}
			if _, err := tx.Emit(ctx, &events.BackupFailed{
				Plan: j.Key, Instance: inst, Host: s.host, Step: "plan", FailedAt: now.UTC(), RequestID: reqID,
				Error: fmt.Sprintf("host %s lost instance %s's lease before the backup started: its new active host takes the instance's backups (`lifeboat backup take %s` sends the command there)", s.host, inst, j.Key),
			}); err != nil {
				return err
			}
		}
		return nil
	})
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
