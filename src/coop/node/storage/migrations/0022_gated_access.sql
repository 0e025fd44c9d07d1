-- 22: gated access (issue 15).  A model builder's account (members.role 'builder') requests
--     access to gated licence buckets; an admin or a vote decides; every download through a
--     signed URL is kept in the register (who, what, when).  The members table's CHECK on role
--     is widened in place (SQLite's documented way to loosen a CHECK constraint: rewrite the
--     table's SQL in the schema; the rows and the table's columns do not change, and rebuilding
--     the table would break the foreign keys that point at it).
-- name: gated access: builders, access requests and the download register

PRAGMA writable_schema = ON;
UPDATE sqlite_master
    SET sql = replace(sql, 'CHECK (role IN (''member'', ''admin''))',
                           'CHECK (role IN (''member'', ''admin'', ''builder''))')
    WHERE type = 'table' AND name = 'members';
PRAGMA writable_schema = RESET;
CREATE TABLE access_requests (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    who TEXT NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    open_weights INTEGER NOT NULL,
    buckets TEXT NOT NULL,
    terms_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT,
    proposal_id INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_by TEXT
);
CREATE INDEX access_requests_member ON access_requests (member_id, id);
CREATE TABLE access_downloads (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES access_requests (id),
    member_id INTEGER NOT NULL REFERENCES members (id),
    release TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX access_downloads_member ON access_downloads (member_id, at);
