-- Inclusion proofs asked by leaf hash: the RFC 6962 leaf hash of each
-- entry, SHA-256(0x00 || data), computed and indexed by the database.
CREATE INDEX log_entries_leaf ON log_entries USING hash (sha256('\x00'::bytea || data));
