-- name: AddPending :exec
INSERT INTO dns_pending (id, seq, kind, instance, name, type, value, ttl, epoch, old, zoned, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: GetPending :one
SELECT * FROM dns_pending WHERE id = ?;

-- name: DeletePending :execrows
DELETE FROM dns_pending WHERE id = ?;

-- name: CountPending :one
SELECT COUNT(*) FROM dns_pending;

-- name: ListPending :many
SELECT * FROM dns_pending ORDER BY seq, id;

-- name: ListUnzoned :many
-- Changes not applied to the embedded zone yet, in order.
SELECT * FROM dns_pending WHERE zoned = 0 ORDER BY seq, id;

-- name: MarkZoned :exec
UPDATE dns_pending SET zoned = 1, value = ?, ttl = ?, old = ? WHERE id = ?;

-- name: PendingBefore :many
-- The changes of a name asked for before the one at (seq, id).
SELECT * FROM dns_pending WHERE name = @name AND (seq < @seq OR (seq = @seq AND id < @id)) ORDER BY seq, id;

-- name: PendingActivationsBelow :many
-- The activations of an instance queued under an older epoch.
SELECT * FROM dns_pending WHERE instance = ? AND kind = 'activate' AND epoch < ? ORDER BY seq, id;

-- name: MaxQueuedEpoch :one
-- The newest activation epoch queued for the instance; 0 when none.
SELECT CAST(COALESCE(MAX(epoch), 0) AS INTEGER) FROM dns_pending WHERE instance = ? AND kind = 'activate';

-- name: PendingWithoutJob :many
-- Pending changes this host holds no job for (a host whose state was
-- rebuilt from a peer's snapshot, whose work queue is its own).
SELECT p.* FROM dns_pending p LEFT JOIN dns_jobs j ON j.id = p.id WHERE j.id IS NULL ORDER BY p.seq, p.id;
