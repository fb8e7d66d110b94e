-- The rows of intents, constraints and subscriptions each batch wrote or
-- removed, by change sequence: what the state snapshot (a base written at
-- some sequence) lacks. The writer drops those a newer snapshot holds,
-- oldest first: `id` only rises (AUTOINCREMENT never reuses one), so
-- they are a range of it.
-- `changes_from`: every change after this sequence is noted here.
CREATE TABLE IF NOT EXISTS snapshot_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, tbl INTEGER NOT NULL, row INTEGER NOT NULL) STRICT;
INSERT OR IGNORE INTO meta (key, value) SELECT 'changes_from', value FROM meta WHERE key = 'seq';
