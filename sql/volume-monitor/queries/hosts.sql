-- name: HostSeen :exec
INSERT INTO hosts (host, address, services, last_seen, state, state_since)
VALUES (?, ?, ?, ?, 'up', ?)
ON CONFLICT (host) DO UPDATE SET
    address = excluded.address,
    services = excluded.services,
    last_seen = MAX(COALESCE(hosts.last_seen, 0), excluded.last_seen);

-- name: HostSetState :exec
INSERT INTO hosts (host, state, state_since, reason, detected_by, last_seen)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (host) DO UPDATE SET
    state = excluded.state,
    state_since = excluded.state_since,
    reason = excluded.reason,
    detected_by = excluded.detected_by,
    last_seen = COALESCE(MAX(hosts.last_seen, excluded.last_seen), hosts.last_seen, excluded.last_seen);

-- name: ListHosts :many
SELECT host, address, services, last_seen, state, state_since, reason, detected_by
FROM hosts ORDER BY host;
