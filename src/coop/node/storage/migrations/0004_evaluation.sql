-- 4: federated evaluation: requests seen (and their approval), answers, privacy budgets.
-- name: federated evaluation: requests, answers, privacy budgets

CREATE TABLE eval_requests (
    hash TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    task TEXT NOT NULL,
    purpose TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    envelope BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT
) WITHOUT ROWID;
CREATE TABLE eval_answers (
    id INTEGER PRIMARY KEY,
    request_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    records INTEGER NOT NULL,
    detail TEXT
);
CREATE TABLE eval_budget (
    requester TEXT PRIMARY KEY,
    spent_milli INTEGER NOT NULL
) WITHOUT ROWID;
