-- 1: members, integrations, the contribution pipeline (metadata and contents apart),
--    releases, metrics, security data.
-- name: members, integrations, contributions and contents, releases, metrics, security data

CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    email TEXT,
    token_hash TEXT UNIQUE,
    contributor_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (provider, external_id)
);
CREATE TABLE integrations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE contributions (
    seq INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    member_id INTEGER NOT NULL REFERENCES members (id),
    state TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    label TEXT NOT NULL,
    license TEXT NOT NULL,
    ai_use TEXT NOT NULL,
    scope TEXT NOT NULL,
    eval TEXT NOT NULL,
    prompt_shown INTEGER NOT NULL DEFAULT 0,
    language TEXT,
    tags TEXT NOT NULL,
    record_sha256 TEXT,
    dedup_key TEXT,
    pii TEXT,
    reason TEXT,
    claim INTEGER,
    accepted_tick INTEGER,
    left_tick INTEGER,
    released_in INTEGER,
    listed_seq INTEGER,
    supersedes TEXT,
    superseded_by TEXT,
    decided_by TEXT,
    withdrawn_at INTEGER
);
-- The content, apart: state changes rewrite small rows, never the chats themselves.
CREATE TABLE contents (
    seq INTEGER PRIMARY KEY REFERENCES contributions (seq),
    submission BLOB,
    record BLOB
);
CREATE INDEX contributions_by_state ON contributions (state, seq);
CREATE INDEX contributions_by_member ON contributions (member_id, seq);
CREATE INDEX contributions_by_dedup ON contributions (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX contributions_by_left_tick ON contributions (left_tick) WHERE left_tick IS NOT NULL;
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    uid TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_uid ON idempotency (uid);
CREATE TABLE tombstones (
    uid TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    replaced_by TEXT
) WITHOUT ROWID;
CREATE TABLE releases (
    version INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    summary BLOB NOT NULL
);
CREATE TABLE stage_counts (
    day INTEGER NOT NULL,
    channel TEXT NOT NULL,
    stage TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, channel, stage)
) WITHOUT ROWID;
CREATE TABLE security_events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    ip TEXT,
    user_agent TEXT,
    member_id INTEGER,
    action TEXT NOT NULL
);
CREATE INDEX security_events_by_at ON security_events (at);
CREATE TABLE ticks (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT INTO ticks (id, n) VALUES (1, 0);
