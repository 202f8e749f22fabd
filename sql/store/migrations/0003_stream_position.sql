-- stream_position: per stream, the sequence of the last message this database
-- applied (DESIGN §1 "State is applied from the log, on every host"). A
-- host that comes back, or a database restored from a backup, resumes its
-- stream from here while the stream still holds the next message, and
-- otherwise rebuilds its replicated state from a peer.
CREATE TABLE stream_position (
    stream TEXT    PRIMARY KEY,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;
