-- name: GetLowered :one
SELECT * FROM dns_lowered WHERE instance = ?;

-- name: SetLowered :exec
INSERT INTO dns_lowered (instance, ttl, epoch, since) VALUES (?, ?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET ttl = excluded.ttl, epoch = excluded.epoch, since = excluded.since;

-- name: DeleteLowered :execrows
DELETE FROM dns_lowered WHERE instance = ?;

-- name: ListLowered :many
SELECT * FROM dns_lowered ORDER BY instance;
