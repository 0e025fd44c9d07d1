-- 14: members' e-mail addresses: an Open WebUI ingest sent them and the node kept them, yet
--     nothing reads them (a member is known by provider and id). No longer stored; erased.
-- name: members' e-mail addresses erased (scrub)

-- scrub: erases e-mail addresses nothing reads
UPDATE members SET email = NULL WHERE email IS NOT NULL;
