-- 6: publishing channels: every release shipped to a channel target, and where it landed.
-- name: publishing channels

CREATE TABLE publications (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    release TEXT NOT NULL,
    ref TEXT NOT NULL,
    records INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX publications_by_channel ON publications (channel, id);
