-- 16: signed evaluation reports a co-op's admin published (its leaderboard and static site
--     show them as each co-op's consent allows); the bytes are kept exactly as signed.
-- name: published eval reports

CREATE TABLE eval_reports (
    hash TEXT PRIMARY KEY,
    report BLOB NOT NULL,
    task TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL
);
CREATE INDEX eval_reports_by_time ON eval_reports (published_at);
