-- backup-scheduler's state: the backup plans (declared by the config file,
-- changed at run time through the API), the catalog of the backups in each
-- plan's directory (rebuilt from the directory, which is the truth), and the
-- backup-scheduler.take commands waiting to be carried out.

-- plans: one row per plan. definition is the plan as JSON (the config
-- file's plan, with the changes made at run time); the other columns are
-- the scheduler's own state.
CREATE TABLE plans (
    name            TEXT    PRIMARY KEY,
    definition      TEXT    NOT NULL,            -- JSON of the plan
    origin          TEXT    NOT NULL,            -- config, api or builtin
    config_hash     TEXT    NOT NULL DEFAULT '', -- SHA-256 of the config declaration last applied
    last_attempt_at INTEGER,                     -- unix ms of the last scheduled attempt, good or not
    next_due_at     INTEGER,                     -- unix ms when the next scheduled backup is due
    last_backup     TEXT    NOT NULL DEFAULT '', -- name of the last backup taken
    last_success_at INTEGER,                     -- unix ms
    last_error      TEXT    NOT NULL DEFAULT '', -- why the last attempt failed; empty after a success
    last_error_at   INTEGER,                     -- unix ms
    updated_at      INTEGER NOT NULL             -- unix ms of the last change of the definition
) WITHOUT ROWID;

-- backups: the catalog. A row per backup directory of a plan's directory;
-- state says whether it may be restored from.
CREATE TABLE backups (
    plan          TEXT    NOT NULL,
    name          TEXT    NOT NULL,            -- backup-%Y-%m-%d_%H-%M-%S-%z
    dir           TEXT    NOT NULL,            -- the plan's backup directory
    name_time     INTEGER NOT NULL,            -- unix seconds of the time in the name (retention's age)
    instance      TEXT    NOT NULL DEFAULT '',
    store_kind    TEXT    NOT NULL DEFAULT '',
    kind          TEXT    NOT NULL DEFAULT '', -- scheduled, manual, hash, full
    bytes         INTEGER NOT NULL DEFAULT 0,  -- payload bytes
    sha256        TEXT    NOT NULL DEFAULT '', -- SHA-256 of MANIFEST.json
    taken_at      INTEGER NOT NULL DEFAULT 0,  -- unix ms, from the manifest
    consistent_at INTEGER NOT NULL DEFAULT 0,  -- unix ms, from the manifest
    state         TEXT    NOT NULL,            -- valid, invalid, pruning
    problem       TEXT    NOT NULL DEFAULT '', -- why it is invalid
    checked_at    INTEGER NOT NULL,            -- unix ms of the last check of the manifest
    verified_at   INTEGER,                     -- unix ms of the last full verification of the payload
    PRIMARY KEY (plan, name)
) WITHOUT ROWID;

CREATE INDEX backups_name ON backups (name);

-- takes: backup-scheduler.take commands recorded by the handler and carried
-- out by the scheduler, which answers each with BackupTaken or BackupFailed
-- and deletes the row in the same transaction.
CREATE TABLE takes (
    request_id   TEXT    PRIMARY KEY,
    plan         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '',
    requested_at INTEGER NOT NULL -- unix ms
) WITHOUT ROWID;
