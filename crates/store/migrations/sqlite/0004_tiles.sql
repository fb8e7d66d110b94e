-- The log's full tiles (C2SP tlog-tiles: 256 hashes, 8,192 bytes, at
-- level l the roots of 256^l leaves), written in the transaction of the
-- entries that complete them: roots and proofs read them on demand instead
-- of holding the whole tree in memory. A log from before this migration
-- gets its tiles when the store next opens.
CREATE TABLE log_tiles (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
