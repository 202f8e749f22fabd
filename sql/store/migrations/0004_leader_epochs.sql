-- leader_epochs: per leader (a service's, or an instance's lease), the
-- highest epoch whose decisions this database applied. A decision carrying
-- a lower epoch comes from a deposed leader (its late outbox, or a leader
-- that did not yet know it lost its lease) and is dropped, on every host
-- alike, since every host applies the same stream in the same order
-- (DESIGN §1 "Decisions are made once"). Replicated state: part of every
-- service's digest.
CREATE TABLE leader_epochs (
    leader TEXT    PRIMARY KEY,
    epoch  INTEGER NOT NULL
) WITHOUT ROWID;
