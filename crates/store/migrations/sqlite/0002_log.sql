-- Detente embedded store, schema 2: the evidence log. Each committed event's
-- signed entry (the exact leaf bytes hashed into the RFC 6962 tree) is
-- written in the same transaction as the rows it describes. Signed
-- checkpoints are kept by tree size.
CREATE TABLE log_entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT;
CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL) STRICT;
