-- 8: raw submissions are kept only while a person may need them (waiting room, processing,
--    quarantine until the admin's decision): erase the rest.  The connection has
--    secure_delete on, and the database is vacuumed after this one (see SCRUBBING).
-- name: raw submissions erased once no longer needed (scrub)

-- scrub: erases personal data
UPDATE contents SET submission = NULL
    WHERE submission IS NOT NULL AND seq IN (SELECT seq FROM contributions
        WHERE state NOT IN ('waiting_room', 'processing', 'quarantined'));
