-- Each entry's RFC 6962 leaf hash → its index, for inclusion proofs asked
-- by leaf hash. Written with the entries; a log from before this
-- migration is indexed when the store next opens.
CREATE TABLE log_leaves (
    leaf BLOB NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (leaf, idx)
) STRICT, WITHOUT ROWID;
