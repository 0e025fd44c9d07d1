-- 17: releases cut before their signed statements were stored at the cut get one signed at the
--     next open (coop.node.runtime.Node.store_missing_statements), once: the step is then struck
--     off, so later opens do not look at every release folder again.
-- name: releases cut before statements were stored get theirs once

INSERT OR IGNORE INTO upgrade_steps (name) VALUES ('store-statements');
