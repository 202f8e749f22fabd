-- work: the durable work queue of pkg/store (long work that must not run
-- inside a handler's transaction: a backup, a transfer, a DNS update). A
-- handler enqueues a row in its own transaction; a worker runs it after
-- commit and removes it in the transaction that records the outcome.
CREATE TABLE work (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,     -- the caller's id, derived from the cause (an event id), so a job is enqueued once
    kind         TEXT    NOT NULL,            -- which worker runs it
    key          TEXT    NOT NULL,            -- jobs of one kind and key run one at a time, in seq order
    owner        TEXT    NOT NULL DEFAULT '', -- who may run it (the runtime's owner check); empty: whoever holds this file
    payload      BLOB    NOT NULL,            -- JSON
    trace        TEXT    NOT NULL DEFAULT '', -- W3C trace headers of the enqueuing context, JSON
    attempts     INTEGER NOT NULL DEFAULT 0,  -- how many times a worker started it
    due_at       INTEGER NOT NULL,            -- unix ms: not before
    leased_until INTEGER NOT NULL DEFAULT 0,  -- unix ms: a worker runs it until then (renewed while it runs)
    last_error   TEXT    NOT NULL DEFAULT '', -- why the last attempt failed
    created_at   INTEGER NOT NULL             -- unix ms
);

CREATE INDEX work_key ON work (kind, key, seq);
