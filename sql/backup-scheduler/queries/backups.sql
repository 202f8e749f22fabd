-- name: BackupPut :exec
INSERT INTO backups (plan, name, dir, name_time, instance, store_kind, kind, bytes, sha256,
                     taken_at, consistent_at, state, problem, checked_at, verified_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (plan, name) DO UPDATE SET
    dir = excluded.dir,
    name_time = excluded.name_time,
    instance = excluded.instance,
    store_kind = excluded.store_kind,
    kind = excluded.kind,
    bytes = excluded.bytes,
    sha256 = excluded.sha256,
    taken_at = excluded.taken_at,
    consistent_at = excluded.consistent_at,
    state = excluded.state,
    problem = excluded.problem,
    checked_at = excluded.checked_at,
    verified_at = excluded.verified_at;

-- name: BackupGet :one
SELECT * FROM backups WHERE plan = ? AND name = ?;

-- name: BackupsOfPlan :many
SELECT * FROM backups WHERE plan = ? ORDER BY name_time, name;

-- name: BackupsAll :many
SELECT * FROM backups ORDER BY plan, name_time, name;

-- name: BackupsNamed :many
SELECT * FROM backups WHERE name = ? ORDER BY plan;

-- name: BackupSetState :exec
UPDATE backups SET state = ?, problem = ?, checked_at = ? WHERE plan = ? AND name = ?;

-- name: BackupDelete :exec
DELETE FROM backups WHERE plan = ? AND name = ?;

-- name: BackupDeletePlan :exec
DELETE FROM backups WHERE plan = ?;

-- name: BackupCount :one
SELECT COUNT(*) FROM backups WHERE plan = ? AND state = 'valid';

-- name: BackupsForRetention :many
-- BackupsForRetention is what a pruning pass needs of a plan's valid
-- backups, in no order (the rule sorts), row by row; the pass itself reads
-- the same in one string, BackupsForRetentionPacked.
SELECT name, name_time FROM backups INDEXED BY backups_retention WHERE plan = ? AND state = 'valid';

-- name: BackupsForRetentionPacked :one
-- BackupsForRetentionPacked is BackupsForRetention in one string, which a
-- pruning pass reads (retain.go's unpackRetention): "name_time name" of
-- each valid backup (unix seconds, then the name, which holds neither a
-- space nor a comma), joined with commas, in no order; empty when there is
-- none. One row instead of one per backup, because every row read through
-- database/sql and the driver costs about a microsecond of calls and
-- allocations: most of a pass over 100k backups.
SELECT CAST(coalesce(group_concat(name_time || ' ' || name, ','), '') AS TEXT) AS packed
FROM backups INDEXED BY backups_retention WHERE plan = ? AND state = 'valid';

-- name: BackupsInvalid :many
SELECT name, name_time, problem FROM backups INDEXED BY backups_retention WHERE plan = ? AND state = 'invalid';
