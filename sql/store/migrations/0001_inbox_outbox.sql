-- The inbox and outbox every service database carries: the effectively-once
-- machinery of pkg/store. A handler's state change, the id of the event it
-- consumed and the events it emits commit in one transaction.

-- inbox: ids of the events and commands already applied.
CREATE TABLE inbox (
    id         TEXT    PRIMARY KEY,
    subject    TEXT    NOT NULL,
    handled_at INTEGER NOT NULL -- unix milliseconds
) WITHOUT ROWID;

CREATE INDEX inbox_handled_at ON inbox (handled_at);

-- outbox: events waiting for the relay to publish them; a row is removed only
-- after JetStream acknowledged it.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    subject    TEXT    NOT NULL,
    headers    TEXT    NOT NULL, -- JSON object of string lists
    body       BLOB    NOT NULL,
    created_at INTEGER NOT NULL  -- unix milliseconds
);
