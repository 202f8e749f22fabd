-- name: AppliedSet :exec
-- Advances stream's applied sequence; it never goes backwards.
INSERT INTO stream_position (stream, seq) VALUES (?, ?)
ON CONFLICT (stream) DO UPDATE SET seq = MAX(seq, excluded.seq);

-- name: AppliedReset :exec
-- Sets stream's applied sequence, also backwards (a rebuild from a peer).
INSERT INTO stream_position (stream, seq) VALUES (?, ?)
ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq;

-- name: AppliedGet :one
SELECT seq FROM stream_position WHERE stream = ?;
