-- name: OutboxAdd :exec
INSERT INTO outbox (id, subject, headers, body, created_at) VALUES (?, ?, ?, ?, ?);

-- name: OutboxNext :many
SELECT seq, id, subject, headers, body, created_at FROM outbox ORDER BY seq LIMIT ?;

-- name: OutboxDelete :exec
DELETE FROM outbox WHERE seq = ?;

-- name: OutboxCount :one
SELECT COUNT(*) FROM outbox;
