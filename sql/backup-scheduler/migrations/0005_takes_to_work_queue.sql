-- backup-scheduler: the takes table gives way to the runtime's durable work
-- queue (the work table of pkg/store, created by the store's own
-- migrations, which run before the service's). Every job of a plan is
-- queued with kind 'plan' and the plan's name as its key, so that one job
-- per plan runs at a time. A take recorded by an older version and not yet
-- carried out becomes such a job here, with the payload the worker reads
-- (planJob in services/backup-scheduler/jobs.go), so it is still carried
-- out after the upgrade and answered with its request id. Its owner is
-- empty: whoever holds this database, which is the host that recorded it.
-- (0004 is left to the retention index being worked on beside this.)
INSERT INTO work (id, kind, key, owner, payload, trace, due_at, created_at)
SELECT 'take:' || request_id, 'plan', plan, '',
       json_object('op', 'take', 'plan', plan, 'kind', kind, 'reason', reason, 'request_id', request_id),
       '', requested_at, requested_at
FROM takes
ORDER BY requested_at, request_id;

DROP TABLE takes;
