-- The leaf-hash index moves into memory (src/leaves.rs), rebuilt at open
-- from the level-0 tiles, which hold every full tile's leaf hashes in log
-- order. On disk it was a B-tree keyed by random hashes: moving hashes
-- into it rewrote most of its pages each time, a burst of random writes
-- that the next WAL checkpoint synced while commits waited behind it.
DROP TABLE IF EXISTS log_leaves;
DROP TABLE IF EXISTS log_leaves_recent;
