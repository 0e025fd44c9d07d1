-- 23: gated access across the federation (issue 15): an origin's head keeps the licence buckets
--     its latest manifest gates (a JSON list of licences; NULL: not read yet, as for a head kept
--     before the column, read again from its head manifest when the node opens) and whether its
--     federation may mirror them (1 only when the manifest says so).
-- name: federation heads keep the gated buckets

ALTER TABLE fed_origins ADD COLUMN gated TEXT;
ALTER TABLE fed_origins ADD COLUMN mirror_gated INTEGER NOT NULL DEFAULT 0;
