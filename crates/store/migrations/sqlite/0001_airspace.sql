-- Detente embedded store, schema 1: the DSS entities, one JSON body per row.
-- Rows are keyed by a rowid the store assigns in creation order, so new
-- records append to the end of each table instead of landing on random
-- B-tree pages; the entity id is kept beside it. The in-memory state and
-- index are rebuilt from these rows at start.
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE intents (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE constraints (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE subscriptions (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE availability (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE reports (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL) STRICT;
INSERT INTO meta (key, value) VALUES ('seq', 0);
