-- volume-monitor: the hosts it has heard of. Heartbeats keep last_seen;
-- HostDown and HostUp, from this service's own detection or from any outside
-- publisher, set state.
CREATE TABLE hosts (
    host        TEXT    PRIMARY KEY,
    address     TEXT    NOT NULL DEFAULT '',
    services    TEXT    NOT NULL DEFAULT '[]', -- JSON list
    last_seen   INTEGER,                       -- unix ms of the last heartbeat
    state       TEXT    NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'down')),
    state_since INTEGER NOT NULL,              -- unix ms
    reason      TEXT    NOT NULL DEFAULT '',
    detected_by TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
