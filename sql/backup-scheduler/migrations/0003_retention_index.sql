-- backup-scheduler: the index a pruning pass reads, narrow enough to be
-- scanned quickly when a catalog holds many backups (the table's primary
-- key, plan and name, is part of every index entry of a WITHOUT ROWID
-- table). The retention queries name it (INDEXED BY).
CREATE INDEX backups_retention ON backups (plan, state, name_time);
