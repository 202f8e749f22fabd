-- name: PlanChangeGet :one
-- PlanChangeGet is what the PlanChanged events said of a plan
-- (replicated).
SELECT * FROM plan_changes WHERE plan = ?;

-- name: PlanChangePut :exec
INSERT INTO plan_changes (plan, fields, rev, changed_at, change_id)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (plan) DO UPDATE SET
    fields = excluded.fields,
    rev = excluded.rev,
    changed_at = excluded.changed_at,
    change_id = excluded.change_id;

-- name: PlanChangeList :many
SELECT * FROM plan_changes ORDER BY plan;

-- name: PlanChangesTaken :one
-- PlanChangesTaken is the rev of a plan's changes this host's plans row
-- has taken (host-local).
SELECT rev FROM plan_changes_taken WHERE plan = ?;

-- name: PlanChangesTakenPut :exec
INSERT INTO plan_changes_taken (plan, rev) VALUES (?, ?)
ON CONFLICT (plan) DO UPDATE SET rev = excluded.rev;

-- name: PlanChangesBehind :many
-- PlanChangesBehind lists the plans whose changes this host has not all
-- taken: a rebuild from a peer replaced plan_changes.
SELECT c.plan FROM plan_changes AS c
LEFT JOIN plan_changes_taken AS t ON t.plan = c.plan
WHERE t.rev IS NULL OR t.rev < c.rev
ORDER BY c.plan;
