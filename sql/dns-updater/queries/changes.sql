-- name: AddJob :exec
INSERT INTO dns_jobs (id, kind, instance, name, epoch, created_at) VALUES (?, ?, ?, ?, ?, ?);

-- name: GetJob :one
SELECT * FROM dns_jobs WHERE id = ?;

-- name: CountJobs :one
SELECT COUNT(*) FROM dns_jobs;

-- name: MaxQueuedEpoch :one
-- The newest activation epoch queued for the instance; 0 when none.
SELECT CAST(COALESCE(MAX(epoch), 0) AS INTEGER) FROM dns_jobs WHERE instance = ? AND kind = 'activate';

-- name: NewerActivations :one
-- How many activations of the instance newer than epoch are queued.
SELECT COUNT(*) FROM dns_jobs WHERE instance = ? AND kind = 'activate' AND epoch > ?;

-- name: SetJobOld :exec
-- Records the values before the first Set, once: a value already read is
-- kept.
UPDATE dns_jobs SET old = ? WHERE id = ? AND old IS NULL;

-- name: MarkJobApplied :exec
UPDATE dns_jobs SET applied = 1 WHERE id = ?;

-- name: DeleteJob :execrows
DELETE FROM dns_jobs WHERE id = ?;
