-- dns-updater across hosts (issue 10). Every host applies every event to
-- its own database; the service's leader alone sends each change to an
-- external provider and verifies it, and its outcome (DNSRecordUpdated or
-- DNSUpdateFailed, naming the change in a header) is applied by every
-- host. What follows from the events alike on every host is replicated
-- (service.Spec.Replicated: dns_records, dns_history, dns_epochs,
-- dns_seen, dns_lowered and dns_pending below); what is about this host's
-- own work is not: dns_zone (the SOA this host serves, its serial bumped
-- by this host's loads of the zone file and changes) and dns_jobs (this
-- host's progress on its copy of each change job).

-- dns_pending: the changes the events asked for (InstanceActivated, and
-- FailoverStarted, FailoverCompleted or RestoreFailed for a TTL) and whose
-- outcome has not been applied yet, in stream order. A row goes when the
-- leader's outcome naming it is applied, when an outcome of a later change
-- of the same name is (the leader runs the changes of a name in order), or
-- when a newer activation of the instance supersedes it. A set by hand
-- (the dns-updater.set command, which only the leader consumes) is not
-- here: it lives in the leader's own queue until its outcome.
CREATE TABLE dns_pending (
    id         TEXT    PRIMARY KEY, -- the change job's id: 'change:' || the id of the message that asked
    seq        INTEGER NOT NULL,    -- stream sequence of that message: the order of the changes (0 or less: queued by an older version)
    kind       TEXT    NOT NULL,    -- activate, ttl
    instance   TEXT    NOT NULL,
    name       TEXT    NOT NULL,    -- fully qualified, lower case
    type       TEXT    NOT NULL,    -- A or AAAA
    value      TEXT    NOT NULL,    -- the values to set, comma separated; empty for a TTL change not applied yet (it keeps the values the name holds)
    ttl        INTEGER NOT NULL,    -- the TTL, resolved when asked (lowered during a planned failover); 0 only for a change queued by an older version
    epoch      INTEGER NOT NULL,    -- the activation's fencing epoch; 0 for a TTL change
    old        TEXT,                -- the values before, once known to every host (the embedded zone's when the change was applied to it); NULL when only the leader reads them (an external provider)
    zoned      INTEGER NOT NULL DEFAULT 0, -- 1 once applied to the embedded zone (by every host's handler)
    created_at INTEGER NOT NULL     -- the asking message's stream time, unix milliseconds
) WITHOUT ROWID;

CREATE INDEX dns_pending_name ON dns_pending (name, seq, id);
CREATE INDEX dns_pending_instance ON dns_pending (instance, kind, epoch);

-- dns_jobs.done: 1 once this host ran the job to its outcome (as the
-- leader) and the outcome event is on its way, 2 when it found nothing to
-- do (no outcome comes); the row goes when the change is resolved. Until
-- then the leader's reconciliation does not queue the change again.
ALTER TABLE dns_jobs ADD COLUMN done INTEGER NOT NULL DEFAULT 0;

-- dns_history.job: the change's id, so that the outcome of a change
-- applied to the embedded zone (recorded, unverified, when applied) can
-- record its verification, and an outcome is recorded once.
ALTER TABLE dns_history ADD COLUMN job TEXT NOT NULL DEFAULT '';
CREATE INDEX dns_history_job ON dns_history (job);

-- Changes queued by an older version become pending changes in the order
-- they were queued (seq 0 and below, before any stream sequence), run by
-- the leader. A change it had already applied to the embedded zone is
-- applied again, with the values it had read, when the service starts.
INSERT INTO dns_pending (id, seq, kind, instance, name, type, value, ttl, epoch, old, zoned, created_at)
SELECT j.id, w.seq - (SELECT MAX(seq) FROM work), j.kind, j.instance, j.name,
       COALESCE(json_extract(CAST(w.payload AS TEXT), '$.type'), 'A'),
       COALESCE(json_extract(CAST(w.payload AS TEXT), '$.value'), ''),
       COALESCE(json_extract(CAST(w.payload AS TEXT), '$.ttl'), 0),
       j.epoch, j.old, 0, j.created_at
FROM dns_jobs j JOIN work w ON w.id = j.id
WHERE w.kind = 'change' AND j.kind <> 'set';

-- A set by hand stays a job of this host's queue, made in its turn (after
-- -1: not checked against the changes of its name recorded meanwhile,
-- which it was queued after).
UPDATE work SET payload = json_set(CAST(payload AS TEXT), '$.after', -1)
WHERE kind = 'change' AND json_extract(CAST(payload AS TEXT), '$.kind') = 'set';

UPDATE work SET owner = 'leader:dns-updater' WHERE kind = 'change';
