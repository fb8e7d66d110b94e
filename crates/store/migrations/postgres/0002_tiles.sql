-- The log's full tiles (C2SP tlog-tiles: 256 hashes, 8,192 bytes, at
-- level l the roots of 256^l leaves), written in the transaction of the
-- entries that complete them: roots and proofs read them on demand instead
-- of holding the whole tree in memory. A log from before this migration
-- gets its tiles when a replica next opens it.
CREATE TABLE log_tiles (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    hashes bytea NOT NULL CHECK (length(hashes) = 8192),
    PRIMARY KEY (level, idx)
);
