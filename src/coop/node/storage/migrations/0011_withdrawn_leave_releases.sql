-- 11: withdrawn content leaves the releases the node still serves.  A tombstone is pending
--     (revised_at NULL) until every release holding its record was revised; rows from before
--     are pending too, so an upgraded node revises its old releases at its next start.  A
--     peer's tombstone remembers the scope its record had in this node's federated releases
--     (released_scope; NULL: none held it), which decides whether their tombstone lists name it.
-- name: withdrawn content leaves the releases still served

ALTER TABLE tombstones ADD COLUMN revised_at INTEGER;
ALTER TABLE fed_tombstones ADD COLUMN revised_at INTEGER;
ALTER TABLE fed_tombstones ADD COLUMN released_scope TEXT;
CREATE INDEX tombstones_to_revise ON tombstones (uid) WHERE revised_at IS NULL;
CREATE INDEX fed_tombstones_to_revise ON fed_tombstones (origin, uid) WHERE revised_at IS NULL;
