-- name: PlanGet :one
SELECT * FROM plans WHERE name = ?;

-- name: PlanList :many
SELECT * FROM plans ORDER BY name;

-- name: PlanPut :exec
-- PlanPut creates a plan or replaces its definition, keeping the
-- scheduler's state of an existing one.
INSERT INTO plans (name, definition, origin, config_hash, next_due_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    definition = excluded.definition,
    origin = excluded.origin,
    config_hash = excluded.config_hash,
    next_due_at = excluded.next_due_at,
    updated_at = excluded.updated_at;

-- name: PlanDelete :exec
DELETE FROM plans WHERE name = ?;

-- name: PlanAttempted :exec
UPDATE plans SET last_attempt_at = ?, next_due_at = ? WHERE name = ?;

-- name: PlanSucceeded :exec
UPDATE plans SET last_backup = ?, last_success_at = ?, last_error = '', last_error_at = NULL WHERE name = ?;

-- name: PlanFailed :exec
UPDATE plans SET last_error = ?, last_error_at = ? WHERE name = ?;

-- name: PlanDueAt :exec
-- Fixes when a plan's next scheduled backup is due (a new plan: now), so
-- that the job serving that due time has one id however often it is looked
-- at.
UPDATE plans SET next_due_at = ? WHERE name = ? AND next_due_at IS NULL;

-- name: PlanScheduledSince :many
-- The plan's valid scheduled backups taken at or after a due time: a
-- scheduled job run again after a crash finds here the backup its first run
-- wrote (announced by the catalog rebuild) and takes no second one for the
-- same due time.
SELECT name, taken_at FROM backups
WHERE plan = ? AND kind = 'scheduled' AND state = 'valid' AND taken_at >= ?
ORDER BY taken_at LIMIT 1;
