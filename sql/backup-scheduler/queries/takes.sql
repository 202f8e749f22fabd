-- name: TakeAdd :exec
INSERT INTO takes (request_id, plan, kind, reason, requested_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (request_id) DO NOTHING;

-- name: TakeList :many
SELECT * FROM takes ORDER BY requested_at, request_id;

-- name: TakeDelete :exec
DELETE FROM takes WHERE request_id = ?;
