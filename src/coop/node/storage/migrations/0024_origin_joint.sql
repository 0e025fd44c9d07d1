-- 24: joint actions across the federation (issue 15): an origin's head keeps what the joint
--     actions binding it demand, as its latest manifest declares them (JSON: freeze, embargo
--     selectors, evaluation-only start, action ids; the JSON null when the manifest declares
--     none; NULL: not read yet, as for a head kept before the column, read again from its head
--     manifest when the node opens).
-- name: federation heads keep the joint demands

ALTER TABLE fed_origins ADD COLUMN joint TEXT;
