-- 13: federation transport: seen request nonces outlive a restart (purged once expired),
--     refused peer requests and manifests are kept (bounded), and each peer's measured clock
--     offset (this node's clock minus the peer's, in seconds).
-- name: federation transport: nonces, refusals, clock skew

CREATE INDEX peer_nonces_by_expires ON peer_nonces (expires);
CREATE TABLE peer_refusals (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    node_id TEXT,
    keyid TEXT,
    step TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX peer_refusals_by_node ON peer_refusals (node_id, id);
ALTER TABLE peers ADD COLUMN clock_skew INTEGER;
