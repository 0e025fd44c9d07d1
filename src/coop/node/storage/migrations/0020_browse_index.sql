-- 20: the public browser at a million records (issue 14): the catalogue's filter columns
--     indexed, so a filtered page and the filter choices are read by seeks (each index also
--     holds the row's seq, the browser's keyset order), never by a scan of every row.
-- name: browse indexes on the catalogue

CREATE INDEX catalog_by_label ON catalog (label);
CREATE INDEX catalog_by_license ON catalog (license);
CREATE INDEX catalog_by_language ON catalog (language);
CREATE INDEX catalog_by_tags ON catalog (tags);
