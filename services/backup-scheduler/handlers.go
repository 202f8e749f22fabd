package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// handleTake records a backup-scheduler.take for the scheduler to carry out
// (a backup can take long: it is not done inside this transaction). A take
// of a plan that does not exist or is disabled is answered at once with
// BackupFailed. The answer carries the command's id as request_id.
func (s *Service) handleTake(ctx context.Context, tx *store.Tx, cmd *events.BackupTake, m service.Delivery) error {
	kind := cmd.Kind
	if kind == "" {
		kind = events.BackupManual
	}
	fail := func(format string, args ...any) error {
		_, err := tx.Emit(ctx, &events.BackupFailed{
			Plan: cmd.Plan, Kind: kind, Host: s.host, Step: "plan",
			Error: fmt.Sprintf(format, args...), FailedAt: time.Now().UTC(), RequestID: m.ID,
		})
		return err
	}
	if kind == events.BackupScheduled {
		return fail("kind %q is for the schedule's own backups; ask for manual, hash or full", kind)
	}
	q := db.New(tx)
	row, err := q.PlanGet(ctx, cmd.Plan)
	if errors.Is(err, sql.ErrNoRows) {
		return fail("no plan named %q on host %s (lifeboat plan list shows the plans)", cmd.Plan, s.host)
	}
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	p, err := decodePlan(row)
	if err != nil {
		return err
	}
	if p.Disabled {
		return fail("plan %s is disabled, so it takes no backups (enable it with `lifeboat plan enable %s`)", p.Name, p.Name)
	}
	if err := q.TakeAdd(ctx, db.TakeAddParams{
		RequestID: m.ID, Plan: p.Name, Kind: string(kind), Reason: cmd.Reason, RequestedAt: time.Now().UnixMilli(),
	}); err != nil {
		return fmt.Errorf("takes: %w", err)
	}
	// The batch commits after this returns, so this wake-up may come first:
	// the later ones find the take committed (usually within milliseconds),
	// and the scheduler's poll (pollEvery) picks it up in any case.
	s.poke()
	for _, d := range []time.Duration{20 * time.Millisecond, 200 * time.Millisecond} {
		time.AfterFunc(d, s.poke)
	}
	return nil
}
