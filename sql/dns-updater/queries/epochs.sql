-- name: GetEpoch :one
SELECT * FROM dns_epochs WHERE instance = ?;

-- name: SetEpoch :exec
INSERT INTO dns_epochs (instance, epoch, name, address, applied_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET
    epoch = excluded.epoch, name = excluded.name, address = excluded.address, applied_at = excluded.applied_at;
