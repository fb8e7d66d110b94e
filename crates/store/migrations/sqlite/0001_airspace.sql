-- Detente embedded store, schema 1: the DSS entities, one JSON body per row.
-- The in-memory index is rebuilt from these rows at start.
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE intents (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE constraints (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE subscriptions (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE availability (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE reports (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
INSERT INTO meta (key, value) VALUES ('seq', 0);
