-- name: GetEpoch :one
SELECT * FROM dns_epochs WHERE instance = ?;

-- name: SetEpoch :exec
INSERT INTO dns_epochs (instance, epoch, name, address, applied_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (instance) DO UPDATE SET
    epoch = excluded.epoch, name = excluded.name, address = excluded.address, applied_at = excluded.applied_at
WHERE excluded.epoch >= dns_epochs.epoch; -- an epoch never moves back

-- name: GetSeen :one
SELECT epoch FROM dns_seen WHERE instance = ?;

-- name: SetSeen :exec
-- Keeps the largest epoch seen.
INSERT INTO dns_seen (instance, epoch) VALUES (?, ?)
ON CONFLICT (instance) DO UPDATE SET epoch = MAX(epoch, excluded.epoch);

-- name: ListEpochs :many
SELECT * FROM dns_epochs ORDER BY instance;
