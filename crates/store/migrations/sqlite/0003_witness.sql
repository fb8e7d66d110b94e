-- Detente embedded store, schema 3: the witness's state (the latest
-- checkpoint cosigned per origin, persisted before the cosignature is
-- returned) and the evidence of misbehaviour it observes.
CREATE TABLE witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL) STRICT;
CREATE TABLE misbehaviour (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, note_a TEXT NOT NULL, note_b TEXT NOT NULL, found_ms INTEGER NOT NULL) STRICT;
