-- backup-scheduler: first migration. The service's own state tables arrive with its
-- behaviour; until then it keeps its settings here (values an operator
-- changed at run time, which must survive a restart).
CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL -- unix milliseconds
) WITHOUT ROWID;
