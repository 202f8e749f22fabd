package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// handleTake queues a backup-scheduler.take as a job of its plan (a backup
// can take long: it is not taken inside this transaction; runTake takes it
// and answers). A take of a plan that does not exist, is disabled or cannot
// be read is answered at once with BackupFailed. The answer carries the
// command's id as request_id, and the job's id is derived from it, so a
// redelivered or re-applied command queues one job.
//
// It consumes the takes addressed to this host
// (lifeboat.cmd.backup-scheduler.<host>.take, as `lifeboat backup take`
// sends them) and the unaddressed ones, which any one host consumes. A take
// of an instance's plan is carried out only by the host holding the
// instance's lease (its job is the instance's, backupJob); on any other
// host it is answered with BackupFailed saying this host does not hold the
// lease (the holder is for the sender to find: the CLI reads the lease
// bucket; a service does not).
func (s *Service) handleTake(ctx context.Context, tx *store.Tx, cmd *events.BackupTake, m service.Delivery) error {
	kind := cmd.Kind
	if kind == "" {
		kind = events.BackupManual
	}
	instance := ""
	fail := func(format string, args ...any) error {
		_, err := tx.Emit(ctx, &events.BackupFailed{
			Plan: cmd.Plan, Instance: instance, Kind: kind, Host: s.host, Step: "plan",
			Error: fmt.Sprintf(format, args...), FailedAt: s.now().UTC(), RequestID: m.ID,
		})
		return err
	}
	if kind == events.BackupScheduled {
		return fail("kind %q is for the schedule's own backups; ask for manual, hash or full", kind)
	}
	row, err := db.New(tx).PlanGet(ctx, cmd.Plan)
	if errors.Is(err, sql.ErrNoRows) {
		return fail("no plan named %q on host %s (lifeboat plan list shows the plans)", cmd.Plan, s.host)
	}
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	p, err := decodePlan(row)
	if err != nil {
		return fail("%s", err)
	}
	instance = p.Instance
	if p.Disabled {
		return fail("plan %s is disabled, so it takes no backups (enable it with `lifeboat plan enable %s`)", p.Name, p.Name)
	}
	if _, held := s.tenure(p); !held {
		return fail("%s", s.notHolder(p))
	}
	_, err = tx.Enqueue(ctx, s.backupJob("take:"+m.ID, p, planJob{Op: opTake, Plan: p.Name, Kind: kind, Reason: cmd.Reason, RequestID: m.ID}))
	return err
}

// handlePlanChanged applies a plan changed at run time, as every host does
// (planset.go, planchanges.go): it records the change in the replicated
// plan_changes from the event and the row alone, then takes the plan's
// changes into this host's plans — the plan's new definition, its origin
// and config hash kept, updated_at the event's changed_at, the next due
// time from the plan's own last attempt — so that it never reads the clock
// or the file system. A change that does not hold here (the plan is
// unknown or unreadable here, or another plan has the directory by now) is
// left out of this host's plans and logged: it would not hold however often
// it was retried; it is recorded in plan_changes all the same, as on every
// host. Once it commits, the scheduler is woken, the plan's catalog rebuilt
// if its directory changed, and the API call waiting for it (on the host
// that took the request) answered.
func (s *Service) handlePlanChanged(ctx context.Context, tx *store.Tx, ev *events.PlanChanged, d service.Delivery) error {
	if err := recordPlanChange(ctx, tx, ev, d.ID); err != nil {
		return err
	}
	refused, err := s.takeChanges(ctx, tx, ev.Plan, isSet(ev))
	if err != nil {
		return err
	}
	if refused != nil {
		s.log.WarnContext(ctx, "plan: run-time change not applied on this host",
			slog.String("plan", ev.Plan), slog.String("action", string(ev.Action)), slog.String("error", refused.Error()))
	}
	tx.AfterCommit(func() { s.planApplied(d.ID, refused) })
	return nil
}
