-- 3: federation: pinned peers, what each origin's manifests say, equivocation evidence,
--    mirrored records, request nonces; federated releases.
-- name: federation: peers, manifests, mirrored records, federated releases

CREATE TABLE peers (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    node_id TEXT NOT NULL UNIQUE,
    name TEXT,
    added_at INTEGER NOT NULL,
    last_contact INTEGER,
    last_error TEXT,
    contacts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE fed_origins (
    origin TEXT PRIMARY KEY,
    coop TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    key TEXT NOT NULL,
    forked INTEGER NOT NULL DEFAULT 0,
    embargo_whole INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE fed_manifests (
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    envelope BLOB NOT NULL,
    in_chain INTEGER NOT NULL,
    evidence INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (origin, seq, hash)
) WITHOUT ROWID;
CREATE TABLE fed_entries (
    origin TEXT NOT NULL,
    uid TEXT NOT NULL,
    hash TEXT NOT NULL,
    license TEXT NOT NULL,
    ai_use TEXT NOT NULL,
    eval TEXT NOT NULL,
    scope TEXT NOT NULL,
    PRIMARY KEY (origin, uid)
) WITHOUT ROWID;
CREATE TABLE fed_tombstones (
    origin TEXT NOT NULL,
    uid TEXT NOT NULL,
    PRIMARY KEY (origin, uid)
) WITHOUT ROWID;
CREATE TABLE mirror_records (
    hash TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    uid TEXT NOT NULL,
    license TEXT NOT NULL,
    ai_use TEXT NOT NULL,
    eval TEXT NOT NULL,
    scope TEXT NOT NULL,
    record BLOB NOT NULL,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX mirror_records_by_origin ON mirror_records (origin, uid);
CREATE TABLE peer_nonces (
    nonce TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE federated_releases (
    version INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    summary BLOB NOT NULL
);
ALTER TABLE tombstones ADD COLUMN announced_seq INTEGER;
