-- Console challenges already answered and sessions logged out, each kept
-- until it would have expired anyway: shared by every replica (a challenge
-- is answered once, a logout ends the session on all of them) and kept
-- across restarts.
CREATE TABLE console_marks (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
