-- 5: the web front: sign-in sessions, uploads in progress, the public catalogue, bounties.
-- name: the web front: sessions, uploads, the public catalogue, bounties

CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE web_uploads (
    id TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL,
    data BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE catalog (
    seq INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    license TEXT NOT NULL,
    model TEXT,
    language TEXT,
    tags TEXT NOT NULL,
    contributor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    released_in INTEGER,
    title TEXT NOT NULL
);
CREATE INDEX catalog_by_model ON catalog (model);
CREATE VIRTUAL TABLE catalog_text USING fts5 (text);
-- How far the catalogue has got: records are indexed release by release, in seq order.
CREATE TABLE catalog_progress (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    release INTEGER NOT NULL,
    after_seq INTEGER NOT NULL
);
INSERT INTO catalog_progress (id, release, after_seq) VALUES (1, 0, 0);
CREATE INDEX contributions_by_release ON contributions (released_in, seq) WHERE released_in IS NOT NULL;
CREATE TABLE bounties (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    label TEXT,
    language TEXT,
    tag TEXT,
    target INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    closed_at INTEGER
);
