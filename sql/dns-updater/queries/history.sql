-- name: AddHistory :one
INSERT INTO dns_history (name, type, old, new, ttl, provider, epoch, at, verified_after_ms, kind, instance)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: ListHistory :many
-- The newest changes first, at most limit of them.
SELECT * FROM dns_history ORDER BY id DESC LIMIT ?;

-- name: ListHistoryByName :many
SELECT * FROM dns_history WHERE name = ? ORDER BY id DESC LIMIT ?;
