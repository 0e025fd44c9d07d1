-- 15: a peer's tombstone keeps the hash its entry listed, so the same bytes stay out under
--     any other origin's entry too (a co-op relisting a withdrawn record as its own).
-- name: a peer's tombstone keeps its hash

ALTER TABLE fed_tombstones ADD COLUMN hash TEXT;
CREATE INDEX fed_tombstones_by_hash ON fed_tombstones (hash) WHERE hash IS NOT NULL;
