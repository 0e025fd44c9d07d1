-- 2: collective governance: versioned settings, proposals and votes, the audit chain, payouts.
-- name: collective governance: settings, proposals and votes, the audit chain, payouts

CREATE TABLE settings (
    version INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    body BLOB NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE proposals (
    id INTEGER PRIMARY KEY,
    opened_at INTEGER NOT NULL,
    closes_at INTEGER NOT NULL,
    opened_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    changes BLOB NOT NULL,
    classes TEXT NOT NULL,
    quorum_percent INTEGER NOT NULL,
    threshold_percent INTEGER NOT NULL,
    electorate INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_at INTEGER,
    settings_version INTEGER
);
CREATE TABLE votes (
    proposal_id INTEGER NOT NULL REFERENCES proposals (id),
    member_id INTEGER NOT NULL REFERENCES members (id),
    choice TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (proposal_id, member_id)
) WITHOUT ROWID;
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    payload BLOB NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE payouts (
    id INTEGER PRIMARY KEY,
    release INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    ledger BLOB NOT NULL,
    digest TEXT NOT NULL
);
ALTER TABLE releases ADD COLUMN new_records INTEGER NOT NULL DEFAULT 0;
