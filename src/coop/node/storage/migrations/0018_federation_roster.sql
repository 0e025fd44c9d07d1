-- 18: the federation roster: the trusted versions (a chain, each envelope as received), the
--     pending proposals (the unsigned next version) and the signatures gathered for each; an
--     origin's head names the roster its latest manifest states as its federation scope.
--     Evidence: a valid version with the number of a trusted one and another hash (k members
--     signed both: an equivocation), kept to show (a few at most).
-- name: federation roster: versions, proposals and their signatures

CREATE TABLE roster_versions (
    federation TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    envelope BLOB NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (federation, version)
);
CREATE TABLE roster_proposals (
    id TEXT PRIMARY KEY,
    federation TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE roster_signatures (
    proposal TEXT NOT NULL REFERENCES roster_proposals (id) ON DELETE CASCADE,
    keyid TEXT NOT NULL,
    sig TEXT NOT NULL,
    PRIMARY KEY (proposal, keyid)
);
CREATE TABLE roster_evidence (
    hash TEXT PRIMARY KEY,
    federation TEXT NOT NULL,
    version INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    added_at INTEGER NOT NULL
);
ALTER TABLE fed_origins ADD COLUMN roster TEXT;
