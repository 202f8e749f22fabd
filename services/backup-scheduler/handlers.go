package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
func (s *Service) handleTake(ctx context.Context, tx *store.Tx, cmd *events.BackupTake, m service.Delivery) error {
	kind := cmd.Kind
	if kind == "" {
		kind = events.BackupManual
	}
	fail := func(format string, args ...any) error {
		_, err := tx.Emit(ctx, &events.BackupFailed{
			Plan: cmd.Plan, Kind: kind, Host: s.host, Step: "plan",
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
	if p.Disabled {
		return fail("plan %s is disabled, so it takes no backups (enable it with `lifeboat plan enable %s`)", p.Name, p.Name)
	}
	_, err = tx.Enqueue(ctx, s.job("take:"+m.ID, planJob{Op: opTake, Plan: p.Name, Kind: kind, Reason: cmd.Reason, RequestID: m.ID}))
	return err
}
