-- Detente on PostgreSQL, schema 1: everything one node keeps, in the schema
-- the node is configured with (default "detente"). Any number of
-- `detente serve` replicas share it; they serialise every batch of writes
-- with a transaction-level advisory lock and learn of each other's commits
-- through NOTIFY (and a poll every second).

-- One row: the airspace's change sequence, the number of committed batches
-- (`version`), the committed log size (a batch's update names the size it
-- expects: two writers can never fork the log), the versions below which
-- removed records' tombstones were purged, and the key of the node that
-- owns this database (a replica started with another key is refused).
CREATE TABLE meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq bigint NOT NULL,
    version bigint NOT NULL,
    log_size bigint NOT NULL,
    purged_below bigint NOT NULL,
    node_key text
);
INSERT INTO meta (seq, version, log_size, purged_below) VALUES (0, 0, 0, 0);

-- The DSS records (operational intents, constraints, subscriptions, USS
-- availability, reports), one JSON body each, with the batch version that
-- last changed it. A removed record stays as a tombstone (body NULL) so
-- that replicas catching up see the removal; old tombstones are purged.
CREATE TABLE records (
    tbl text NOT NULL,
    id text NOT NULL,
    body text,
    version bigint NOT NULL,
    PRIMARY KEY (tbl, id)
);
CREATE INDEX records_version ON records (version);
CREATE INDEX records_tombstones ON records (version) WHERE body IS NULL;

-- The 4D volumes of live operational intents and constraints, for SQL and
-- PostGIS tools: the outline (circles buffered on the geography), the time
-- window and the altitude band as ranges, under one GiST index.
CREATE TABLE volumes (
    kind text NOT NULL,
    entity uuid NOT NULL,
    n integer NOT NULL,
    area geometry(Geometry, 4326) NOT NULL,
    during tstzrange NOT NULL,
    alt numrange NOT NULL,
    PRIMARY KEY (kind, entity, n)
);
CREATE INDEX volumes_4d ON volumes USING gist (area, during, alt);

-- The evidence log: each committed event's signed entry (the exact leaf
-- bytes hashed into the RFC 6962 tree), written in the same transaction as
-- the records it describes; signed checkpoints by tree size (one per size).
CREATE TABLE log_entries (idx bigint PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE checkpoints (size bigint PRIMARY KEY, note text NOT NULL);

-- The witness's state per origin and the evidence of misbehaviour it saw.
CREATE TABLE witnessed (origin text PRIMARY KEY, size bigint NOT NULL, root bytea NOT NULL, note text NOT NULL);
CREATE TABLE misbehaviour (id bigserial PRIMARY KEY, origin text NOT NULL, note_a text NOT NULL, note_b text NOT NULL, found_ms bigint NOT NULL);
