-- backup-scheduler: the run-time changes of the plans (PlanChanged) get a
-- replicated table of their own, apart from the host-local plans table
-- (DESIGN §1 "Replicas must not diverge").
--
-- plan_changes is replicated (Spec.Replicated): what the PlanChanged events
-- said, per plan, applied alike by every host from the event alone, so it
-- holds the same rows everywhere (the digest endpoint hashes it; a host
-- that rebuilds copies it from a peer). plans stays this host's own: the
-- effective plan it runs (the config file's declaration with the changes,
-- with this host's paths) and its scheduler state.
CREATE TABLE plan_changes (
    plan       TEXT    PRIMARY KEY,
    -- JSON object: each field a change gave (a plan's JSON keys: instance,
    -- description, schedule, directory, store, hooks, targets, min_keep,
    -- disabled; disable and enable give disabled), its latest value as the
    -- plan holds it and the rev of the change that gave it:
    -- {"schedule": {"rev": 2, "value": "2h,1d/7d"}, ...}
    fields     TEXT    NOT NULL,
    rev        INTEGER NOT NULL, -- how many changes of the plan were applied: the last one's rev
    changed_at INTEGER NOT NULL, -- unix ms: the last change's changed_at
    change_id  TEXT    NOT NULL  -- the id of the last PlanChanged applied ('' when carried over below)
) WITHOUT ROWID;

-- plan_changes_taken is this host's own: up to which rev of a plan's
-- changes its plans row has taken them (applied, left out because they did
-- not hold here, or overridden by the config file's declaration, which wins
-- over the changes before it). A plan whose rev here is behind plan_changes
-- (a rebuild from a peer replaced it) takes the fields changed since. It
-- outlives the plan's row, so that a plan the file dropped is not brought
-- back by its old changes.
CREATE TABLE plan_changes_taken (
    plan TEXT    PRIMARY KEY,
    rev  INTEGER NOT NULL
) WITHOUT ROWID;

-- Carried over: a plan created at run time (origin api) is its changes
-- alone, so its whole definition, less its name, becomes its fields, keys
-- in order, as one change (rev 1) at its updated_at (the last event's
-- changed_at); the ids of the events were never recorded, nor how many
-- there were. A config-declared plan changed at run
-- time is not carried over: which of its fields a change gave is not
-- recorded, and its definition holds this host's paths. It keeps its
-- changes in plans, as before; they are in no replicated row until the
-- plan's next change.
INSERT INTO plan_changes (plan, fields, rev, changed_at, change_id)
SELECT p.name,
       (SELECT json_group_object(f.key, json_object('rev', 1, 'value', json(f.value)))
        FROM (SELECT key,
                     -- the value's JSON, escaped as Go's encoding/json
                     -- escapes (HTML characters, U+2028, U+2029), so that
                     -- the row reads as the service writes one
                     replace(replace(replace(replace(replace(
                         CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                                   WHEN 'text' THEN json_quote(value) ELSE json(value) END,
                         '&', '\u0026'), '<', '\u003c'), '>', '\u003e'),
                         char(8232), '\u2028'), char(8233), '\u2029') AS value
              FROM json_each(p.definition)
              WHERE key <> 'name'
              ORDER BY key) AS f),
       1, p.updated_at, ''
FROM plans AS p
WHERE p.origin = 'api' AND json_valid(p.definition);

INSERT INTO plan_changes_taken (plan, rev)
SELECT plan, rev FROM plan_changes;
