-- name: AddChange :one
INSERT INTO dns_changes (kind, instance, name, type, value, ttl, epoch, trace, created_at, next_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: NextChange :one
-- The oldest change that is due and first in its name's queue: changes to
-- one name are applied in the order they were asked for.
SELECT * FROM dns_changes AS c
WHERE c.next_at <= ?
  AND NOT EXISTS (SELECT 1 FROM dns_changes AS o WHERE o.name = c.name AND o.id < c.id)
ORDER BY c.id
LIMIT 1;

-- name: ListChanges :many
SELECT * FROM dns_changes ORDER BY id;

-- name: MaxPendingEpoch :one
SELECT CAST(COALESCE(MAX(epoch), 0) AS INTEGER) FROM dns_changes WHERE instance = ? AND kind = 'activate';

-- name: NewerActivations :one
-- How many activations of the instance newer than epoch are queued.
SELECT COUNT(*) FROM dns_changes WHERE instance = ? AND kind = 'activate' AND epoch > ?;

-- name: SetChangeOld :exec
UPDATE dns_changes SET old = ? WHERE id = ?;

-- name: MarkChangeApplied :exec
UPDATE dns_changes SET applied = 1 WHERE id = ?;

-- name: RetryChange :exec
UPDATE dns_changes SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?;

-- name: DeleteChange :execrows
DELETE FROM dns_changes WHERE id = ?;
