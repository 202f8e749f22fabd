-- name: AddHistory :one
INSERT INTO dns_history (name, type, old, new, ttl, provider, epoch, at, verified_after_ms, kind, instance, job)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: ListHistory :many
-- The newest changes first, at most limit of them.
SELECT * FROM dns_history ORDER BY id DESC LIMIT ?;

-- name: ListHistoryByName :many
SELECT * FROM dns_history WHERE name = ? ORDER BY id DESC LIMIT ?;

-- name: GetHistoryByJob :one
SELECT * FROM dns_history WHERE job = ? ORDER BY id LIMIT 1;

-- name: HistoryAfter :many
-- The changes of a name recorded after the row id, oldest first.
SELECT * FROM dns_history WHERE name = ? AND id > ? ORDER BY id;

-- name: LastHistoryID :one
-- The newest change of a name; 0 when none.
SELECT CAST(COALESCE(MAX(id), 0) AS INTEGER) FROM dns_history WHERE name = ?;

-- name: SetVerified :exec
UPDATE dns_history SET verified_after_ms = ? WHERE job = ?;
