-- 19: what lets a node take a peer's manifest at the cost of what it changes.
--     fed_missing: per origin, the listed entries a peer may mirror (federation or public scope,
--     a licence that allows redistribution) that are neither held (mirror_records) nor
--     tombstoned; the book store keeps it as entries, mirrored copies and tombstones come and
--     go, and it is filled here from what an upgraded data directory already holds.
--     fed_buckets: per origin and licence bucket, the count and Merkle root its entries were
--     last folded to (the trees behind them live in memory and are rebuilt from fed_entries
--     whenever they do not match these; an upgraded data directory has none until then).
--     fed_entries_by_hash: who lists a hash, read by every claim check.
-- name: federation: index of missing records, bucket roots

CREATE INDEX fed_entries_by_hash ON fed_entries (hash);
CREATE TABLE fed_missing (
    origin TEXT NOT NULL,
    uid TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (origin, uid)
) WITHOUT ROWID;
CREATE INDEX fed_missing_by_hash ON fed_missing (hash);
CREATE TABLE fed_buckets (
    origin TEXT NOT NULL,
    license TEXT NOT NULL,
    count INTEGER NOT NULL,
    root TEXT NOT NULL,
    PRIMARY KEY (origin, license)
) WITHOUT ROWID;
INSERT INTO fed_missing (origin, uid, hash)
    SELECT e.origin, e.uid, e.hash FROM fed_entries e
    WHERE e.scope IN ('federation', 'public')
      AND e.license IN ('CC0-1.0', 'CC-BY-4.0', 'CC-BY-SA-4.0')
      AND NOT EXISTS (SELECT 1 FROM mirror_records m WHERE m.hash = e.hash)
      AND NOT EXISTS (SELECT 1 FROM fed_tombstones t WHERE t.origin = e.origin AND t.uid = e.uid);
