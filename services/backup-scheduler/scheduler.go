package backupscheduler

import (
	"context"
	"database/sql"
	"log/slog"
	"strconv"
	"time"

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
	now := s.now()
	rows, err := db.New(s.rt.DB.R).PlanList(ctx)
	if err != nil {
		return 0, err
	}
	due, wait := s.dueNow(ctx, rows, now)
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
// thing is due.
func (s *Service) dueNow(ctx context.Context, rows []db.Plan, now time.Time) ([]dueWork, time.Duration) {
	wait := maxSleep
	var out []dueWork
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
				work:   s.job("scheduled:"+name+":"+strconv.FormatInt(ms, 10), planJob{Op: opScheduled, Plan: name, Due: ms}),
				fixDue: fix,
			})
			continue // the scheduled job queues a retention pass after it
		}
		wait = min(wait, at.Sub(now))
		// Retention also runs on a timer, so backups age out while backups
		// fail (the min_keep guard keeps the last good one).
		if next := lastPrune.Add(every); !next.After(now) {
			out = append(out, dueWork{work: s.job("prune:"+name, planJob{Op: opPrune, Plan: name})})
		} else {
			wait = min(wait, next.Sub(now))
		}
	}
	return out, max(wait, time.Millisecond)
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
