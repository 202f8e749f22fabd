-- The hosts table mixed two kinds of state (DESIGN §1 "Replicas must not
-- diverge"): what HostDown and HostUp say, which every host applies from
-- the events stream alike, and the heartbeats this host's process heard
-- over core NATS, which differ from host to host by when each arrived.
-- host_states is replicated (part of the digest); heartbeats is this
-- host's own.
CREATE TABLE host_states (
    host        TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL CHECK (state IN ('up', 'down')),
    state_since INTEGER NOT NULL,              -- unix ms: the event's time in the stream
    reason      TEXT    NOT NULL DEFAULT '',
    detected_by TEXT    NOT NULL DEFAULT '',
    last_seen   INTEGER                        -- unix ms: the last heartbeat the event reported
) WITHOUT ROWID;

CREATE TABLE heartbeats (
    host       TEXT    PRIMARY KEY,
    address    TEXT    NOT NULL DEFAULT '',
    services   TEXT    NOT NULL DEFAULT '[]', -- JSON list
    first_seen INTEGER NOT NULL,              -- unix ms, by this host's clock
    last_seen  INTEGER NOT NULL               -- unix ms, by the sender's clock
) WITHOUT ROWID;

-- A state was set by an event when it is down or names a reason or who
-- detected it; a row made by a heartbeat alone holds no state.
INSERT INTO host_states (host, state, state_since, reason, detected_by, last_seen)
SELECT host, state, state_since, reason, detected_by, last_seen FROM hosts
WHERE state = 'down' OR reason != '' OR detected_by != '';

INSERT INTO heartbeats (host, address, services, first_seen, last_seen)
SELECT host, address, services, state_since, last_seen FROM hosts
WHERE last_seen IS NOT NULL;

DROP TABLE hosts;
