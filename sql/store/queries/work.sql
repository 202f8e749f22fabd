-- name: WorkAdd :execrows
-- Enqueues a job; 0 rows means a job with this id is queued already.
INSERT INTO work (id, kind, key, owner, payload, trace, due_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING;

-- name: WorkHeads :many
-- The first job of every kind and key: the only ones that may run.
SELECT w.seq, w.id, w.kind, w.key, w.owner, w.payload, w.trace, w.attempts, w.due_at, w.leased_until, w.last_error, w.created_at
FROM work w
WHERE w.seq = (SELECT MIN(o.seq) FROM work o WHERE o.kind = w.kind AND o.key = w.key)
ORDER BY w.due_at, w.seq;

-- name: WorkLease :execrows
-- Takes a job for a worker, if nobody took it since it was read.
UPDATE work SET leased_until = sqlc.arg(until), attempts = attempts + 1
WHERE seq = sqlc.arg(seq) AND leased_until = sqlc.arg(held);

-- name: WorkRenew :execrows
UPDATE work SET leased_until = sqlc.arg(until) WHERE seq = sqlc.arg(seq) AND leased_until = sqlc.arg(held);

-- name: WorkRetry :exec
-- Gives a failed job back, due again after its backoff.
UPDATE work SET leased_until = 0, due_at = ?, last_error = ? WHERE seq = ? AND leased_until = ?;

-- name: WorkRelease :exec
-- Gives a job back untried (the worker was stopped): due at once, the
-- attempt not counted.
UPDATE work SET leased_until = 0, attempts = MAX(attempts - 1, 0) WHERE seq = ? AND leased_until = ?;

-- name: WorkReleaseAll :exec
-- A process that opens the file holds no job yet: leases of an earlier
-- process are void.
UPDATE work SET leased_until = 0 WHERE leased_until != 0;

-- name: WorkFinish :execrows
-- Removes a job a worker finished, if it still holds it.
DELETE FROM work WHERE seq = ? AND leased_until = ?;

-- name: WorkDelete :execrows
-- Removes a job by id, whoever runs it (its outcome was applied here from
-- the event its owner emitted).
DELETE FROM work WHERE id = ?;

-- name: WorkList :many
SELECT seq, id, kind, key, owner, payload, trace, attempts, due_at, leased_until, last_error, created_at
FROM work ORDER BY seq LIMIT ?;

-- name: WorkCount :one
SELECT COUNT(*) FROM work;

-- name: WorkKick :execrows
-- Makes the waiting jobs of a kind (and key, unless empty) due now: an
-- operator's kick retries at once instead of after the backoff.
UPDATE work SET due_at = sqlc.arg(now)
WHERE kind = sqlc.arg(kind) AND (sqlc.arg(key) = '' OR key = sqlc.arg(key)) AND leased_until = 0 AND due_at > sqlc.arg(now);
