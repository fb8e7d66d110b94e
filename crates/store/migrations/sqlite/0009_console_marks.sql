-- Console challenges already answered and sessions logged out, each kept
-- until it would have expired anyway: a challenge is answered once and a
-- logged-out session stays ended across restarts.
CREATE TABLE IF NOT EXISTS console_marks (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
