-- name: InboxAdd :execrows
-- Records a consumed id; 0 rows means it was handled before.
INSERT INTO inbox (id, subject, handled_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO NOTHING;

-- name: InboxPrune :execrows
DELETE FROM inbox WHERE handled_at < ?;

-- name: InboxCount :one
SELECT COUNT(*) FROM inbox;
