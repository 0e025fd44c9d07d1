-- 10: names claimed first come, first served (members' handles and pseudonyms, compared
--     folded: NFKC, case, look-alikes), and each member's random default pseudonym.
--     Members from before get theirs, and their names claimed, at the node's next start
--     (attribution.upgrade: folding needs Python).  Payouts keep a per-member ledger apart
--     from the public one.
-- name: names claimed first come, first served; default pseudonyms; per-member payout ledgers

ALTER TABLE members ADD COLUMN pseudonym TEXT;
CREATE TABLE claimed_names (
    folded TEXT NOT NULL,
    member_id INTEGER NOT NULL REFERENCES members (id),
    kind TEXT NOT NULL CHECK (kind IN ('member', 'pseudonym')),
    name TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (folded, member_id, kind)
) WITHOUT ROWID;
CREATE TABLE payout_members (
    payout INTEGER PRIMARY KEY REFERENCES payouts (id),
    ledger BLOB NOT NULL,
    digest TEXT NOT NULL
);
