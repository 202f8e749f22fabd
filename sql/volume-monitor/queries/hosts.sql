-- name: HeartbeatSeen :exec
INSERT INTO heartbeats (host, address, services, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (host) DO UPDATE SET
    address = excluded.address,
    services = excluded.services,
    last_seen = MAX(heartbeats.last_seen, excluded.last_seen);

-- name: HostSetState :exec
INSERT INTO host_states (host, state, state_since, reason, detected_by, last_seen)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (host) DO UPDATE SET
    state = excluded.state,
    state_since = excluded.state_since,
    reason = excluded.reason,
    detected_by = excluded.detected_by,
    last_seen = COALESCE(MAX(host_states.last_seen, excluded.last_seen), host_states.last_seen, excluded.last_seen);

-- name: ListHostStates :many
SELECT host, state, state_since, reason, detected_by, last_seen FROM host_states ORDER BY host;

-- name: ListHeartbeats :many
SELECT host, address, services, first_seen, last_seen FROM heartbeats ORDER BY host;
