-- 25: the channel ledger (issue 16).  A publication under review (a pull request) is open until
--     merged or closed: publications keep its state, when it settled (rows from before were live
--     at once: merged, settled when published) and the database tick (table ticks) its files
--     were checked clear of withdrawals at: a record withdrawn with left_tick at most that is
--     out of them (NULL before issue 16; a merged review settles by it).  channel_records holds
--     one row per record and publish channel: when it was first offered there, when it went
--     live (NULL: never), when it was withdrawn and when it left the channel (the next live
--     publication there after the withdrawal, or its post deleted).  The backfill carries the
--     old publications again, in order: each one held the public records released in its
--     version or before, except those of licences gated by the settings in force then and
--     those withdrawn before it went out (the first publication on a channel wins; old rows
--     have no tick, so by time).  A withdrawn record's row is tombstoned and retracted at the
--     first later publication on that channel.
-- name: the channel ledger: records per publish channel, publications open or settled

ALTER TABLE publications ADD COLUMN state TEXT NOT NULL DEFAULT 'merged';
ALTER TABLE publications ADD COLUMN settled_at INTEGER;
ALTER TABLE publications ADD COLUMN cleared_tick INTEGER;
UPDATE publications SET settled_at = at;
CREATE TABLE channel_records (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    route TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'merged', 'closed', 'tombstoned')),
    opened_at INTEGER NOT NULL,
    published_at INTEGER,
    withdrawn_at INTEGER,
    retracted_at INTEGER,
    ref TEXT,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE INDEX channel_records_by_seq ON channel_records (seq);
CREATE INDEX channel_records_by_published ON channel_records (channel, published_at)
    WHERE published_at IS NOT NULL;
CREATE INDEX channel_records_by_retracted ON channel_records (channel, retracted_at)
    WHERE retracted_at IS NOT NULL;
CREATE INDEX channel_records_to_retract ON channel_records (channel, seq)
    WHERE withdrawn_at IS NOT NULL AND published_at IS NOT NULL AND retracted_at IS NULL;
CREATE INDEX channel_records_open ON channel_records (channel, version)
    WHERE state IN ('open', 'closed');
CREATE INDEX publications_open ON publications (channel, release) WHERE state = 'open';
INSERT INTO channel_records
    (channel, seq, route, version, state, opened_at, published_at, withdrawn_at, retracted_at, ref)
WITH pubs AS (
    SELECT p.id, p.channel, p.at, CAST(substr(p.release, 2) AS INTEGER) AS version,
        (SELECT json_extract(CAST(s.body AS TEXT), '$.access.gated') FROM settings s
            WHERE s.at <= p.at ORDER BY s.version DESC LIMIT 1) AS gated
    FROM publications p
), firsts AS (
    SELECT p.channel, c.seq, min(p.id) AS id
    FROM pubs p JOIN contributions c
        ON c.released_in IS NOT NULL AND c.released_in <= p.version AND c.scope = 'public'
        AND (c.withdrawn_at IS NULL OR c.withdrawn_at >= p.at)
        AND (p.gated IS NULL OR c.license NOT IN (SELECT g.value FROM json_each(p.gated) g))
    GROUP BY p.channel, c.seq
)
SELECT f.channel, c.seq, c.channel, p.version,
    CASE WHEN c.withdrawn_at IS NULL THEN 'merged' ELSE 'tombstoned' END,
    p.at, p.at, c.withdrawn_at,
    (SELECT min(q.at) FROM publications q WHERE q.channel = f.channel AND q.at > c.withdrawn_at),
    NULL
FROM firsts f JOIN pubs p ON p.id = f.id JOIN contributions c ON c.seq = f.seq;
