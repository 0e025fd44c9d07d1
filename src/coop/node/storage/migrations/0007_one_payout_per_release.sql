-- 7: one payout per release: a second one only supersedes the first, with a reason.
--    Releases paid twice before this: the latest payout stands, earlier ones are marked
--    superseded by it (the audit log already holds every payout.computed).
-- name: one payout per release

ALTER TABLE payouts ADD COLUMN supersedes INTEGER;
ALTER TABLE payouts ADD COLUMN superseded_by INTEGER;
ALTER TABLE payouts ADD COLUMN supersede_reason TEXT;
UPDATE payouts SET superseded_by = (SELECT max(p.id) FROM payouts p WHERE p.release = payouts.release)
    WHERE id < (SELECT max(p.id) FROM payouts p WHERE p.release = payouts.release);
CREATE UNIQUE INDEX payouts_one_standing_per_release ON payouts (release) WHERE superseded_by IS NULL;
