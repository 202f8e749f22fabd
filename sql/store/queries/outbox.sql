-- name: OutboxAdd :exec
INSERT INTO outbox (id, subject, headers, body, created_at) VALUES (?, ?, ?, ?, ?);

-- name: OutboxNext :many
SELECT seq, id, subject, headers, body, created_at FROM outbox ORDER BY seq LIMIT ?;

-- name: OutboxDelete :exec
DELETE FROM outbox WHERE seq = ?;

-- name: OutboxCount :one
SELECT COUNT(*) FROM outbox;

-- name: OutboxAddOnce :execrows
-- Queues an event unless one with its id is queued already (a leader's
-- decision taken again in the same epoch); 0 rows means it was.
INSERT INTO outbox (id, subject, headers, body, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING;
