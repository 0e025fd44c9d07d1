-- 21: joint actions (issue 15): co-ops act together, k of n co-signed.  Each action is kept as
--     the envelope received (its id the sha256 of its canonical payload), each co-op's signed
--     statement (sign or end) as received, one per (action, co-op, decision): the first kept.
-- name: joint actions and their statements

CREATE TABLE joint_actions (
    id TEXT PRIMARY KEY,
    envelope BLOB NOT NULL,
    proposer TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE joint_statements (
    action TEXT NOT NULL,
    coop TEXT NOT NULL,
    decision TEXT NOT NULL,
    envelope BLOB NOT NULL,
    at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (action, coop, decision)
);
