-- dns-updater's work queue and the state around it.
--
-- A handler never talks to a DNS server inside its transaction (that can
-- block for seconds while the service's single writer is held). It records
-- the change it wants in dns_changes, in the same transaction as the
-- consumed event's inbox entry, so the change is queued exactly once. The
-- service's Run loop applies queued changes in order per name, verifies
-- them against the authoritative servers, and in one transaction deletes
-- the row, appends dns_history, moves dns_epochs and queues the outcome
-- event in the outbox. A crash in between leaves the row queued; applying it
-- again replaces the record set with the same values, so nothing is applied
-- twice in effect and the outcome is recorded once.

-- dns_changes: changes waiting to be applied, oldest first.
CREATE TABLE dns_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL, -- activate (InstanceActivated), set (dns-updater.set), ttl (lower or restore the TTL)
    instance   TEXT    NOT NULL, -- the instance whose name it is
    name       TEXT    NOT NULL, -- fully qualified, lower case
    type       TEXT    NOT NULL, -- A or AAAA
    value      TEXT    NOT NULL, -- the address to set; empty for a TTL change, which keeps the current values
    ttl        INTEGER NOT NULL, -- 0: the instance's TTL when applied (lowered during a planned failover)
    epoch      INTEGER NOT NULL, -- the activation's fencing epoch; 0 for set and ttl
    trace      TEXT    NOT NULL, -- trace context (JSON headers) of the event that asked, so the outcome continues its trace
    created_at INTEGER NOT NULL, -- unix milliseconds
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL, -- unix milliseconds; not tried before
    old        TEXT,             -- values before the first attempt (comma separated), once read; NULL until then
    applied    INTEGER NOT NULL DEFAULT 0, -- 1 once the provider accepted the change (verification may still fail)
    last_error TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX dns_changes_name ON dns_changes (name, id);
CREATE INDEX dns_changes_instance ON dns_changes (instance, kind, epoch);

-- dns_seen: the newest InstanceActivated epoch seen per instance, applied or
-- not. An activation older than one already seen is never applied, even
-- when the newer one failed: its host has been superseded.
CREATE TABLE dns_seen (
    instance TEXT    PRIMARY KEY,
    epoch    INTEGER NOT NULL
) WITHOUT ROWID;

-- dns_lowered: instances whose TTL is lowered for a planned failover
-- (dns.lower_ttl_before), until the failover completes or fails.
CREATE TABLE dns_lowered (
    instance TEXT    PRIMARY KEY,
    ttl      INTEGER NOT NULL, -- the lowered TTL
    epoch    INTEGER NOT NULL, -- the FailoverStarted epoch; 0 when it carried none
    since    INTEGER NOT NULL  -- unix milliseconds
) WITHOUT ROWID;

-- dns_history says what caused each change and for which instance.
ALTER TABLE dns_history ADD COLUMN kind TEXT NOT NULL DEFAULT '';     -- activate, set, ttl
ALTER TABLE dns_history ADD COLUMN instance TEXT NOT NULL DEFAULT '';
