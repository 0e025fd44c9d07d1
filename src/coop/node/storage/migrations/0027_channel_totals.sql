-- 27: running totals of the channel ledger (issue 16), so the metrics read O(channels x routes)
--     rows instead of every channel_records row on each scrape.  channel_totals holds per (publish
--     channel, intake route) the rows in each state M, how many were published, retracted, are
--     pending retraction, were withdrawn while live (withdrawn_at >= published_at), and for the
--     exposure in record-seconds: the rows live and not withdrawn, the sum of their published_at
--     (exposure now = now * live - live_since) and the sum of withdrawn_at - published_at over
--     the withdrawals of live rows.  channel_days counts per day (floor(t / 86400), UTC) the rows
--     first published, retracted, and withdrawn while live.  Triggers on channel_records keep
--     both for every writer; they are created after the backfill, so nothing is counted twice.
--     The index by withdrawal time finds the few rows withdrawn after a report's "now".
-- name: running totals of the channel ledger for the metrics

CREATE TABLE channel_totals (
    channel TEXT NOT NULL,
    route TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 0,
    merged INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    tombstoned INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0,
    retracted INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0,
    withdrawals INTEGER NOT NULL DEFAULT 0,
    live INTEGER NOT NULL DEFAULT 0,
    live_since INTEGER NOT NULL DEFAULT 0,
    withdrawn_exposure INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, route)
) WITHOUT ROWID;
CREATE TABLE channel_days (
    channel TEXT NOT NULL,
    route TEXT NOT NULL,
    day INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    retracted INTEGER NOT NULL DEFAULT 0,
    withdrawals INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, route, day)
) WITHOUT ROWID;
CREATE INDEX channel_records_by_withdrawn ON channel_records (channel, withdrawn_at)
    WHERE withdrawn_at IS NOT NULL;
INSERT INTO channel_totals (channel, route, open, merged, closed, tombstoned, published, retracted, pending, withdrawals, live, live_since, withdrawn_exposure)
SELECT r.channel, r.route,
    coalesce(sum(r.state = 'open'), 0),
    coalesce(sum(r.state = 'merged'), 0),
    coalesce(sum(r.state = 'closed'), 0),
    coalesce(sum(r.state = 'tombstoned'), 0),
    coalesce(sum(r.published_at IS NOT NULL), 0),
    coalesce(sum(r.retracted_at IS NOT NULL), 0),
    coalesce(sum(r.withdrawn_at IS NOT NULL AND r.published_at IS NOT NULL AND r.retracted_at IS NULL), 0),
    coalesce(sum(coalesce(r.withdrawn_at >= r.published_at, 0)), 0),
    coalesce(sum(r.published_at IS NOT NULL AND r.withdrawn_at IS NULL), 0),
    coalesce(sum(CASE WHEN r.withdrawn_at IS NULL THEN coalesce(r.published_at, 0) ELSE 0 END), 0),
    coalesce(sum(CASE WHEN r.withdrawn_at >= r.published_at THEN r.withdrawn_at - r.published_at ELSE 0 END), 0)
FROM channel_records r GROUP BY r.channel, r.route;
INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
SELECT channel, route, day, sum(p), sum(d), sum(w) FROM (
    SELECT r.channel, r.route, ((r.published_at) - (((r.published_at) % 86400) + 86400) % 86400) / 86400 AS day, 1 AS p, 0 AS d, 0 AS w
    FROM channel_records r WHERE r.published_at IS NOT NULL
    UNION ALL
    SELECT r.channel, r.route, ((r.retracted_at) - (((r.retracted_at) % 86400) + 86400) % 86400) / 86400 AS day, 0 AS p, 1 AS d, 0 AS w
    FROM channel_records r WHERE r.retracted_at IS NOT NULL
    UNION ALL
    SELECT r.channel, r.route, ((r.withdrawn_at) - (((r.withdrawn_at) % 86400) + 86400) % 86400) / 86400 AS day, 0 AS p, 0 AS d, 1 AS w
    FROM channel_records r WHERE r.withdrawn_at >= r.published_at
) GROUP BY channel, route, day;
CREATE TRIGGER channel_totals_insert AFTER INSERT ON channel_records BEGIN
    INSERT INTO channel_totals (channel, route, open, merged, closed, tombstoned, published, retracted, pending, withdrawals, live, live_since, withdrawn_exposure)
    SELECT new.channel, new.route,
        (new.state = 'open'),
        (new.state = 'merged'),
        (new.state = 'closed'),
        (new.state = 'tombstoned'),
        (new.published_at IS NOT NULL),
        (new.retracted_at IS NOT NULL),
        (new.withdrawn_at IS NOT NULL AND new.published_at IS NOT NULL AND new.retracted_at IS NULL),
        (coalesce(new.withdrawn_at >= new.published_at, 0)),
        (new.published_at IS NOT NULL AND new.withdrawn_at IS NULL),
        (CASE WHEN new.withdrawn_at IS NULL THEN coalesce(new.published_at, 0) ELSE 0 END),
        (CASE WHEN new.withdrawn_at >= new.published_at THEN new.withdrawn_at - new.published_at ELSE 0 END)
    WHERE true
    ON CONFLICT (channel, route) DO UPDATE SET
        open = open + excluded.open,
        merged = merged + excluded.merged,
        closed = closed + excluded.closed,
        tombstoned = tombstoned + excluded.tombstoned,
        published = published + excluded.published,
        retracted = retracted + excluded.retracted,
        pending = pending + excluded.pending,
        withdrawals = withdrawals + excluded.withdrawals,
        live = live + excluded.live,
        live_since = live_since + excluded.live_since,
        withdrawn_exposure = withdrawn_exposure + excluded.withdrawn_exposure;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.published_at) - (((new.published_at) % 86400) + 86400) % 86400) / 86400, 1, 0, 0
    WHERE new.published_at IS NOT NULL
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.retracted_at) - (((new.retracted_at) % 86400) + 86400) % 86400) / 86400, 0, 1, 0
    WHERE new.retracted_at IS NOT NULL
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.withdrawn_at) - (((new.withdrawn_at) % 86400) + 86400) % 86400) / 86400, 0, 0, 1
    WHERE new.withdrawn_at >= new.published_at
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
END;
CREATE TRIGGER channel_totals_delete AFTER DELETE ON channel_records BEGIN
    INSERT INTO channel_totals (channel, route, open, merged, closed, tombstoned, published, retracted, pending, withdrawals, live, live_since, withdrawn_exposure)
    SELECT old.channel, old.route,
        -(old.state = 'open'),
        -(old.state = 'merged'),
        -(old.state = 'closed'),
        -(old.state = 'tombstoned'),
        -(old.published_at IS NOT NULL),
        -(old.retracted_at IS NOT NULL),
        -(old.withdrawn_at IS NOT NULL AND old.published_at IS NOT NULL AND old.retracted_at IS NULL),
        -(coalesce(old.withdrawn_at >= old.published_at, 0)),
        -(old.published_at IS NOT NULL AND old.withdrawn_at IS NULL),
        -(CASE WHEN old.withdrawn_at IS NULL THEN coalesce(old.published_at, 0) ELSE 0 END),
        -(CASE WHEN old.withdrawn_at >= old.published_at THEN old.withdrawn_at - old.published_at ELSE 0 END)
    WHERE true
    ON CONFLICT (channel, route) DO UPDATE SET
        open = open + excluded.open,
        merged = merged + excluded.merged,
        closed = closed + excluded.closed,
        tombstoned = tombstoned + excluded.tombstoned,
        published = published + excluded.published,
        retracted = retracted + excluded.retracted,
        pending = pending + excluded.pending,
        withdrawals = withdrawals + excluded.withdrawals,
        live = live + excluded.live,
        live_since = live_since + excluded.live_since,
        withdrawn_exposure = withdrawn_exposure + excluded.withdrawn_exposure;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.published_at) - (((old.published_at) % 86400) + 86400) % 86400) / 86400, -1, 0, 0
    WHERE old.published_at IS NOT NULL
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.retracted_at) - (((old.retracted_at) % 86400) + 86400) % 86400) / 86400, 0, -1, 0
    WHERE old.retracted_at IS NOT NULL
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.withdrawn_at) - (((old.withdrawn_at) % 86400) + 86400) % 86400) / 86400, 0, 0, -1
    WHERE old.withdrawn_at >= old.published_at
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
END;
CREATE TRIGGER channel_totals_update AFTER UPDATE ON channel_records
WHEN old.state IS NOT new.state OR old.published_at IS NOT new.published_at
    OR old.withdrawn_at IS NOT new.withdrawn_at OR old.retracted_at IS NOT new.retracted_at
    OR old.channel IS NOT new.channel OR old.route IS NOT new.route
BEGIN
    INSERT INTO channel_totals (channel, route, open, merged, closed, tombstoned, published, retracted, pending, withdrawals, live, live_since, withdrawn_exposure)
    SELECT old.channel, old.route,
        -(old.state = 'open'),
        -(old.state = 'merged'),
        -(old.state = 'closed'),
        -(old.state = 'tombstoned'),
        -(old.published_at IS NOT NULL),
        -(old.retracted_at IS NOT NULL),
        -(old.withdrawn_at IS NOT NULL AND old.published_at IS NOT NULL AND old.retracted_at IS NULL),
        -(coalesce(old.withdrawn_at >= old.published_at, 0)),
        -(old.published_at IS NOT NULL AND old.withdrawn_at IS NULL),
        -(CASE WHEN old.withdrawn_at IS NULL THEN coalesce(old.published_at, 0) ELSE 0 END),
        -(CASE WHEN old.withdrawn_at >= old.published_at THEN old.withdrawn_at - old.published_at ELSE 0 END)
    WHERE true
    ON CONFLICT (channel, route) DO UPDATE SET
        open = open + excluded.open,
        merged = merged + excluded.merged,
        closed = closed + excluded.closed,
        tombstoned = tombstoned + excluded.tombstoned,
        published = published + excluded.published,
        retracted = retracted + excluded.retracted,
        pending = pending + excluded.pending,
        withdrawals = withdrawals + excluded.withdrawals,
        live = live + excluded.live,
        live_since = live_since + excluded.live_since,
        withdrawn_exposure = withdrawn_exposure + excluded.withdrawn_exposure;
    INSERT INTO channel_totals (channel, route, open, merged, closed, tombstoned, published, retracted, pending, withdrawals, live, live_since, withdrawn_exposure)
    SELECT new.channel, new.route,
        (new.state = 'open'),
        (new.state = 'merged'),
        (new.state = 'closed'),
        (new.state = 'tombstoned'),
        (new.published_at IS NOT NULL),
        (new.retracted_at IS NOT NULL),
        (new.withdrawn_at IS NOT NULL AND new.published_at IS NOT NULL AND new.retracted_at IS NULL),
        (coalesce(new.withdrawn_at >= new.published_at, 0)),
        (new.published_at IS NOT NULL AND new.withdrawn_at IS NULL),
        (CASE WHEN new.withdrawn_at IS NULL THEN coalesce(new.published_at, 0) ELSE 0 END),
        (CASE WHEN new.withdrawn_at >= new.published_at THEN new.withdrawn_at - new.published_at ELSE 0 END)
    WHERE true
    ON CONFLICT (channel, route) DO UPDATE SET
        open = open + excluded.open,
        merged = merged + excluded.merged,
        closed = closed + excluded.closed,
        tombstoned = tombstoned + excluded.tombstoned,
        published = published + excluded.published,
        retracted = retracted + excluded.retracted,
        pending = pending + excluded.pending,
        withdrawals = withdrawals + excluded.withdrawals,
        live = live + excluded.live,
        live_since = live_since + excluded.live_since,
        withdrawn_exposure = withdrawn_exposure + excluded.withdrawn_exposure;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.published_at) - (((old.published_at) % 86400) + 86400) % 86400) / 86400, -1, 0, 0
    WHERE old.published_at IS NOT NULL AND (old.published_at IS NOT new.published_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.published_at) - (((new.published_at) % 86400) + 86400) % 86400) / 86400, 1, 0, 0
    WHERE new.published_at IS NOT NULL AND (old.published_at IS NOT new.published_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.retracted_at) - (((old.retracted_at) % 86400) + 86400) % 86400) / 86400, 0, -1, 0
    WHERE old.retracted_at IS NOT NULL AND (old.retracted_at IS NOT new.retracted_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.retracted_at) - (((new.retracted_at) % 86400) + 86400) % 86400) / 86400, 0, 1, 0
    WHERE new.retracted_at IS NOT NULL AND (old.retracted_at IS NOT new.retracted_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT old.channel, old.route, ((old.withdrawn_at) - (((old.withdrawn_at) % 86400) + 86400) % 86400) / 86400, 0, 0, -1
    WHERE old.withdrawn_at >= old.published_at AND (old.withdrawn_at IS NOT new.withdrawn_at OR old.published_at IS NOT new.published_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
    INSERT INTO channel_days (channel, route, day, published, retracted, withdrawals)
    SELECT new.channel, new.route, ((new.withdrawn_at) - (((new.withdrawn_at) % 86400) + 86400) % 86400) / 86400, 0, 0, 1
    WHERE new.withdrawn_at >= new.published_at AND (old.withdrawn_at IS NOT new.withdrawn_at OR old.published_at IS NOT new.published_at OR old.channel IS NOT new.channel OR old.route IS NOT new.route)
    ON CONFLICT (channel, route, day) DO UPDATE SET
        published = published + excluded.published, retracted = retracted + excluded.retracted,
        withdrawals = withdrawals + excluded.withdrawals;
END;
