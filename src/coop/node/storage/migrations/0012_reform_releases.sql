-- 12: releases cut before anonymity was enforced carry the member's hash on anonymous and
--     pseudonymous rows: a one-time revision puts every served release in its public form
--     (coop.node.releases.revision.reform_releases), then the step is struck off.
-- name: releases cut before anonymity was enforced are revised once

CREATE TABLE upgrade_steps (name TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO upgrade_steps (name) VALUES ('reform-releases');
