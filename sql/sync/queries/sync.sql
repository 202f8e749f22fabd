-- name: TargetEnsure :exec
-- A target given work: known from now, and its stall clock starts now if
-- it had nothing waiting.
INSERT INTO targets (name, host, last_progress_at) VALUES (sqlc.arg(name), sqlc.arg(host), sqlc.arg(now))
ON CONFLICT (name) DO UPDATE SET host = excluded.host,
    last_progress_at = CASE WHEN (SELECT COUNT(*) FROM pending p WHERE p.target = excluded.name) = 0
                            THEN excluded.last_progress_at ELSE targets.last_progress_at END;

-- name: PendingAdd :exec
INSERT INTO pending (target, plan, backup, bytes, enqueued_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (target, plan, backup) DO NOTHING;

-- name: PendingDelete :exec
DELETE FROM pending WHERE target = ? AND plan = ? AND backup = ?;

-- name: TargetProgress :exec
-- The target advanced: a batch of chunks arrived.
UPDATE targets SET last_progress_at = ?, sending = ?, bytes_sent = ?, bytes_total = ?, stalled = 0 WHERE name = ?;

-- name: TargetSynced :exec
UPDATE targets SET last_plan = ?, last_backup = ?, last_synced_at = ?, last_lag_ms = ?, last_progress_at = ?,
    last_error = '', stalled = 0, sending = '', bytes_sent = 0, bytes_total = 0
WHERE name = ?;

-- name: TargetFailed :exec
UPDATE targets SET last_error = ? WHERE name = ?;

-- name: TargetStalled :execrows
-- Marks a target stalled once: 0 rows when it is already.
UPDATE targets SET stalled = 1 WHERE name = ? AND stalled = 0;

-- name: ListTargets :many
SELECT t.name, t.host, t.last_plan, t.last_backup, t.last_synced_at, t.last_lag_ms, t.last_progress_at,
       t.last_error, t.stalled, t.sending, t.bytes_sent, t.bytes_total,
       CAST((SELECT COUNT(*) FROM pending p WHERE p.target = t.name) AS INTEGER) AS backlog,
       CAST((SELECT COALESCE(SUM(p.bytes), 0) FROM pending p WHERE p.target = t.name) AS INTEGER) AS backlog_bytes,
       CAST(COALESCE((SELECT p.backup FROM pending p WHERE p.target = t.name ORDER BY p.enqueued_at, p.backup LIMIT 1), '') AS TEXT) AS oldest
FROM targets t ORDER BY t.name;

-- name: PendingCount :one
-- How many backups of a plan wait for a target.
SELECT COUNT(*) FROM pending WHERE target = ? AND plan = ?;
