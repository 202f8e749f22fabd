-- name: AddJob :exec
INSERT INTO dns_jobs (id, kind, instance, name, epoch, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING;

-- name: GetJob :one
SELECT * FROM dns_jobs WHERE id = ?;

-- name: CountJobs :one
SELECT COUNT(*) FROM dns_jobs;

-- name: CountOwnSets :one
-- Sets by hand this host accepted as the leader and has not answered yet.
SELECT COUNT(*) FROM dns_jobs WHERE kind = 'set' AND done = 0;

-- name: SetJobOld :exec
-- Records the values before the first Set, once: a value already read is
-- kept.
UPDATE dns_jobs SET old = ? WHERE id = ? AND old IS NULL;

-- name: MarkJobApplied :exec
UPDATE dns_jobs SET applied = 1 WHERE id = ?;

-- name: MarkJobDone :exec
-- This host decided the job's outcome; the event is on its way.
UPDATE dns_jobs SET done = 1 WHERE id = ?;

-- name: MarkJobSkipped :exec
-- This host found nothing to do for the job: no outcome comes.
UPDATE dns_jobs SET done = 2 WHERE id = ?;

-- name: CountDecided :one
-- Outcomes this host decided and has not applied yet, of changes asked
-- for since created_at (an older one's outcome may never come back: a
-- deposed leader's, dropped).
SELECT COUNT(*) FROM dns_jobs WHERE done = 1 AND created_at > ?;

-- name: DeleteJob :execrows
DELETE FROM dns_jobs WHERE id = ?;
