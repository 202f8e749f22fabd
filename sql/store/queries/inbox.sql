-- name: InboxHas :one
SELECT EXISTS (SELECT 1 FROM inbox WHERE id = ?) AS seen;

-- name: InboxAdd :exec
INSERT INTO inbox (id, subject, handled_at) VALUES (?, ?, ?);

-- name: InboxPrune :execrows
DELETE FROM inbox WHERE handled_at < ?;

-- name: InboxCount :one
SELECT COUNT(*) FROM inbox;
