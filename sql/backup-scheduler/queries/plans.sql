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
