-- name: LeaderEpochGet :one
SELECT epoch FROM leader_epochs WHERE leader = ?;

-- name: LeaderEpochSet :exec
INSERT INTO leader_epochs (leader, epoch) VALUES (?, ?)
ON CONFLICT (leader) DO UPDATE SET epoch = MAX(epoch, excluded.epoch);
