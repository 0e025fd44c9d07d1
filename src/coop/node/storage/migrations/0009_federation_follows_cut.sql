-- 9: federation follows the release cut.  admitted_in: the release whose cut admitted the
--    record for peers (public: the one that released it, federation scope: the same gates).
--    Rows listed before this (listed_seq set) stay listed, since peers hold them, but are
--    served again only once a cut admits them.  What each origin's latest manifest
--    declares (embargo, freeze, federation) and the tags and language of listed entries,
--    for the policy on the peer's side.  embargo NULL: read from the head manifest.
-- name: federation follows the release cut

ALTER TABLE contributions ADD COLUMN admitted_in INTEGER;
UPDATE contributions SET admitted_in = released_in WHERE released_in IS NOT NULL;
CREATE INDEX contributions_to_list ON contributions (seq)
    WHERE admitted_in IS NOT NULL AND listed_seq IS NULL;
ALTER TABLE fed_entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE fed_entries ADD COLUMN language TEXT;
ALTER TABLE fed_origins ADD COLUMN embargo TEXT;
ALTER TABLE fed_origins ADD COLUMN quality_freeze INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fed_origins ADD COLUMN federation TEXT;
