-- The leaf hashes of the newest entries, in log order. Indexing each entry
-- straight into log_leaves (keyed by a random 32-byte hash) dirtied a
-- random page per entry — at 100k entries about four times the pages of the
-- entries themselves, in every batch. Appending here touches one page; the
-- writer moves them into log_leaves in bulk, sorted by hash. Lookups read
-- both tables.
CREATE TABLE log_leaves_recent (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL
) STRICT;
