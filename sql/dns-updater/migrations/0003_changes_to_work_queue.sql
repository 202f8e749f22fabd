-- dns-updater: the dns_changes queue gives way to the runtime's durable work
-- queue (the work table of pkg/store, created by the store's own
-- migrations, which run before the service's). A handler enqueues one job
-- per change, of kind 'change' keyed by the DNS name, so that the changes
-- of one name are applied one at a time and in the order they were asked
-- for; the worker sets, verifies and records the outcome in the
-- transaction that removes the job.
--
-- dns_jobs: what dns-updater itself keeps about each queued change job.
-- The handler inserts the row in the transaction that enqueues the job; the
-- job's outcome deletes it in the transaction that removes the job. Its
-- instance and epoch let a handler drop an activation not newer than one
-- already queued, and let the worker skip an activation superseded by a
-- newer one queued for the same instance. old is the job's own progress:
-- the values the name had, read once before the first Set and committed
-- before it, so an attempt after a crash (when the name may already hold
-- the new value) still reports the true old value.
CREATE TABLE dns_jobs (
    id         TEXT    PRIMARY KEY, -- the work queue's job id ('change:' || the event's id)
    kind       TEXT    NOT NULL,    -- activate, set, ttl
    instance   TEXT    NOT NULL,    -- the instance whose name it is; empty for a set of a name no instance declares
    name       TEXT    NOT NULL,    -- fully qualified, lower case
    epoch      INTEGER NOT NULL,    -- the activation's fencing epoch; 0 for set and ttl
    old        TEXT,                -- values before the first Set (comma separated), once read; NULL until then
    applied    INTEGER NOT NULL DEFAULT 0, -- 1 once the provider accepted the change (verification may still fail)
    created_at INTEGER NOT NULL     -- unix milliseconds
) WITHOUT ROWID;

CREATE INDEX dns_jobs_instance ON dns_jobs (instance, kind, epoch);

-- A change queued by an older version and not yet applied becomes such a
-- job here, with the payload the worker reads (changeJob in
-- services/dns-updater/apply.go), its trace, its attempts and its due time,
-- and keeps the old value it may have read: it is still applied after the
-- upgrade, in the same order per name. Its owner is empty: whoever holds
-- this database, which is the host that queued it.
INSERT INTO work (id, kind, key, owner, payload, trace, attempts, due_at, last_error, created_at)
SELECT 'change:queued-' || id, 'change', name, '',
       json_object('kind', kind, 'instance', instance, 'name', name, 'type', type, 'value', value,
                   'ttl', ttl, 'epoch', epoch),
       trace, attempts, next_at, last_error, created_at
FROM dns_changes
ORDER BY id;

INSERT INTO dns_jobs (id, kind, instance, name, epoch, old, applied, created_at)
SELECT 'change:queued-' || id, kind, instance, name, epoch, old, applied, created_at
FROM dns_changes;

DROP TABLE dns_changes;
