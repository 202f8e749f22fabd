-- dns-updater's state: the zone the embedded DNS server is authoritative for,
-- the history of every record change any provider made, and the last epoch
-- applied per instance (so a late or replayed InstanceActivated can never
-- point a name back at a dead host).

-- dns_zone: one row per zone the embedded server serves; its SOA fields. The
-- serial is bumped in the same transaction as every change of the zone's
-- records, so secondaries and caches see each change.
CREATE TABLE dns_zone (
    zone       TEXT    PRIMARY KEY, -- fully qualified, lower case: "example.com."
    mname      TEXT    NOT NULL,    -- primary name server
    rname      TEXT    NOT NULL,    -- mailbox of the person responsible, as a name
    serial     INTEGER NOT NULL,
    refresh    INTEGER NOT NULL,    -- seconds
    retry      INTEGER NOT NULL,
    expire     INTEGER NOT NULL,
    minimum    INTEGER NOT NULL,    -- negative-caching TTL (RFC 2308)
    ttl        INTEGER NOT NULL,    -- TTL of the SOA record itself
    updated_at INTEGER NOT NULL     -- unix milliseconds
) WITHOUT ROWID;

-- dns_records: the zone's records other than the SOA, one row per value of an
-- RRset; an RRset is (zone, name, type).
CREATE TABLE dns_records (
    zone  TEXT    NOT NULL REFERENCES dns_zone (zone) ON DELETE CASCADE,
    name  TEXT    NOT NULL, -- fully qualified, lower case
    type  TEXT    NOT NULL, -- NS, A, AAAA, CNAME, TXT
    value TEXT    NOT NULL, -- presentation value: an address, a name, or the text of a TXT record
    ttl   INTEGER NOT NULL,
    PRIMARY KEY (zone, name, type, value)
) WITHOUT ROWID;

-- dns_history: every change of a record by any provider, newest last.
CREATE TABLE dns_history (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    old               TEXT    NOT NULL, -- values before, comma separated; empty when absent
    new               TEXT    NOT NULL, -- values after, comma separated
    ttl               INTEGER NOT NULL,
    provider          TEXT    NOT NULL, -- embedded, rfc2136, infoblox
    epoch             INTEGER NOT NULL, -- fencing epoch of the activation; 0 for a manual set
    at                INTEGER NOT NULL, -- unix milliseconds
    verified_after_ms INTEGER NOT NULL  -- how long verification took; -1 when not verified
);

CREATE INDEX dns_history_name ON dns_history (name, id);

-- dns_epochs: the last InstanceActivated applied per instance.
CREATE TABLE dns_epochs (
    instance   TEXT    PRIMARY KEY,
    epoch      INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    applied_at INTEGER NOT NULL -- unix milliseconds
) WITHOUT ROWID;
