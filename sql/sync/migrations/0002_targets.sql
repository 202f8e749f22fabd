-- sync: the targets this host ships to and its backlog, this host's own
-- state (only the host holding a backup can send it).

-- targets: one row per target this host has shipped to or has work for.
CREATE TABLE targets (
    name             TEXT    PRIMARY KEY,
    host             TEXT    NOT NULL,            -- the host the target is on
    last_plan        TEXT    NOT NULL DEFAULT '',
    last_backup      TEXT    NOT NULL DEFAULT '', -- the last backup verified there
    last_synced_at   INTEGER NOT NULL DEFAULT 0,  -- unix ms it was verified
    last_lag_ms      INTEGER NOT NULL DEFAULT 0,  -- its consistent_at to verified
    last_progress_at INTEGER NOT NULL DEFAULT 0,  -- unix ms the target last advanced (or was given work while idle)
    last_error       TEXT    NOT NULL DEFAULT '',
    stalled          INTEGER NOT NULL DEFAULT 0,  -- SyncStalled emitted, not advanced since
    sending          TEXT    NOT NULL DEFAULT '', -- the backup in transfer
    bytes_sent       INTEGER NOT NULL DEFAULT 0,  -- of it, so far
    bytes_total      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- pending: the backups waiting to be shipped to a target (its backlog).
CREATE TABLE pending (
    target      TEXT    NOT NULL,
    plan        TEXT    NOT NULL,
    backup      TEXT    NOT NULL,
    bytes       INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    PRIMARY KEY (target, plan, backup)
) WITHOUT ROWID;
