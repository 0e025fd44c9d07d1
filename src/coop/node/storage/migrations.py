"""Numbered schema migrations, applied in order inside one transaction each.

Never edit a released migration: add the next number.  ``PRAGMA user_version``
holds the last one applied.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["MIGRATIONS", "SCRUBBING", "migrate"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: members, integrations, the contribution pipeline (metadata and contents apart),
    #    releases, metrics, security data.
    """
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('member', 'admin')),
        provider TEXT NOT NULL,
        external_id TEXT NOT NULL,
        email TEXT,
        token_hash TEXT UNIQUE,
        contributor_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        UNIQUE (provider, external_id)
    );
    CREATE TABLE integrations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE contributions (
        seq INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        member_id INTEGER NOT NULL REFERENCES members (id),
        state TEXT NOT NULL,
        channel TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        label TEXT NOT NULL,
        license TEXT NOT NULL,
        ai_use TEXT NOT NULL,
        scope TEXT NOT NULL,
        eval TEXT NOT NULL,
        prompt_shown INTEGER NOT NULL DEFAULT 0,
        language TEXT,
        tags TEXT NOT NULL,
        record_sha256 TEXT,
        dedup_key TEXT,
        pii TEXT,
        reason TEXT,
        claim INTEGER,
        accepted_tick INTEGER,
        left_tick INTEGER,
        released_in INTEGER,
        listed_seq INTEGER,
        supersedes TEXT,
        superseded_by TEXT,
        decided_by TEXT,
        withdrawn_at INTEGER
    );
    -- The content, apart: state changes rewrite small rows, never the chats themselves.
    CREATE TABLE contents (
        seq INTEGER PRIMARY KEY REFERENCES contributions (seq),
        submission BLOB,
        record BLOB
    );
    CREATE INDEX contributions_by_state ON contributions (state, seq);
    CREATE INDEX contributions_by_member ON contributions (member_id, seq);
    CREATE INDEX contributions_by_dedup ON contributions (dedup_key) WHERE dedup_key IS NOT NULL;
    CREATE INDEX contributions_by_left_tick ON contributions (left_tick) WHERE left_tick IS NOT NULL;
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        uid TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_uid ON idempotency (uid);
    CREATE TABLE tombstones (
        uid TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        replaced_by TEXT
    ) WITHOUT ROWID;
    CREATE TABLE releases (
        version INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        summary BLOB NOT NULL
    );
    CREATE TABLE stage_counts (
        day INTEGER NOT NULL,
        channel TEXT NOT NULL,
        stage TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (day, channel, stage)
    ) WITHOUT ROWID;
    CREATE TABLE security_events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        ip TEXT,
        user_agent TEXT,
        member_id INTEGER,
        action TEXT NOT NULL
    );
    CREATE INDEX security_events_by_at ON security_events (at);
    CREATE TABLE ticks (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
    INSERT INTO ticks (id, n) VALUES (1, 0);
    """,
    # 2: collective governance: versioned settings, proposals and votes, the audit chain, payouts.
    """
    CREATE TABLE settings (
        version INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        body BLOB NOT NULL,
        digest TEXT NOT NULL
    );
    CREATE TABLE proposals (
        id INTEGER PRIMARY KEY,
        opened_at INTEGER NOT NULL,
        closes_at INTEGER NOT NULL,
        opened_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        changes BLOB NOT NULL,
        classes TEXT NOT NULL,
        quorum_percent INTEGER NOT NULL,
        threshold_percent INTEGER NOT NULL,
        electorate INTEGER NOT NULL,
        status TEXT NOT NULL,
        decided_at INTEGER,
        settings_version INTEGER
    );
    CREATE TABLE votes (
        proposal_id INTEGER NOT NULL REFERENCES proposals (id),
        member_id INTEGER NOT NULL REFERENCES members (id),
        choice TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (proposal_id, member_id)
    ) WITHOUT ROWID;
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        payload BLOB NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TABLE payouts (
        id INTEGER PRIMARY KEY,
        release INTEGER NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount TEXT NOT NULL,
        ledger BLOB NOT NULL,
        digest TEXT NOT NULL
    );
    ALTER TABLE releases ADD COLUMN new_records INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: federation: pinned peers, what each origin's manifests say, equivocation evidence,
    #    mirrored records, request nonces; federated releases.
    """
    CREATE TABLE peers (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        node_id TEXT NOT NULL UNIQUE,
        name TEXT,
        added_at INTEGER NOT NULL,
        last_contact INTEGER,
        last_error TEXT,
        contacts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE fed_origins (
        origin TEXT PRIMARY KEY,
        coop TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        key TEXT NOT NULL,
        forked INTEGER NOT NULL DEFAULT 0,
        embargo_whole INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE fed_manifests (
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        envelope BLOB NOT NULL,
        in_chain INTEGER NOT NULL,
        evidence INTEGER NOT NULL DEFAULT 0,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (origin, seq, hash)
    ) WITHOUT ROWID;
    CREATE TABLE fed_entries (
        origin TEXT NOT NULL,
        uid TEXT NOT NULL,
        hash TEXT NOT NULL,
        license TEXT NOT NULL,
        ai_use TEXT NOT NULL,
        eval TEXT NOT NULL,
        scope TEXT NOT NULL,
        PRIMARY KEY (origin, uid)
    ) WITHOUT ROWID;
    CREATE TABLE fed_tombstones (
        origin TEXT NOT NULL,
        uid TEXT NOT NULL,
        PRIMARY KEY (origin, uid)
    ) WITHOUT ROWID;
    CREATE TABLE mirror_records (
        hash TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        uid TEXT NOT NULL,
        license TEXT NOT NULL,
        ai_use TEXT NOT NULL,
        eval TEXT NOT NULL,
        scope TEXT NOT NULL,
        record BLOB NOT NULL,
        received_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX mirror_records_by_origin ON mirror_records (origin, uid);
    CREATE TABLE peer_nonces (
        nonce TEXT PRIMARY KEY,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE federated_releases (
        version INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        summary BLOB NOT NULL
    );
    ALTER TABLE tombstones ADD COLUMN announced_seq INTEGER;
    """,
    # 4: federated evaluation: requests seen (and their approval), answers, privacy budgets.
    """
    CREATE TABLE eval_requests (
        hash TEXT PRIMARY KEY,
        requester TEXT NOT NULL,
        task TEXT NOT NULL,
        purpose TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        envelope BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        decided_by TEXT
    ) WITHOUT ROWID;
    CREATE TABLE eval_answers (
        id INTEGER PRIMARY KEY,
        request_hash TEXT NOT NULL,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        records INTEGER NOT NULL,
        detail TEXT
    );
    CREATE TABLE eval_budget (
        requester TEXT PRIMARY KEY,
        spent_milli INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5: the web front: sign-in sessions, uploads in progress, the public catalogue, bounties.
    """
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        member_id INTEGER NOT NULL REFERENCES members (id),
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE web_uploads (
        id TEXT PRIMARY KEY,
        member_id INTEGER NOT NULL,
        data BLOB NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE catalog (
        seq INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        license TEXT NOT NULL,
        model TEXT,
        language TEXT,
        tags TEXT NOT NULL,
        contributor TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        released_in INTEGER,
        title TEXT NOT NULL
    );
    CREATE INDEX catalog_by_model ON catalog (model);
    CREATE VIRTUAL TABLE catalog_text USING fts5 (text);
    -- How far the catalogue has got: records are indexed release by release, in seq order.
    CREATE TABLE catalog_progress (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        release INTEGER NOT NULL,
        after_seq INTEGER NOT NULL
    );
    INSERT INTO catalog_progress (id, release, after_seq) VALUES (1, 0, 0);
    CREATE INDEX contributions_by_release ON contributions (released_in, seq) WHERE released_in IS NOT NULL;
    CREATE TABLE bounties (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        label TEXT,
        language TEXT,
        tag TEXT,
        target INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        closed_at INTEGER
    );
    """,
    # 6: publishing channels: every release shipped to a channel target, and where it landed.
    """
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
    """,
    # 7: one payout per release: a second one only supersedes the first, with a reason.
    #    Releases paid twice before this: the latest payout stands, earlier ones are marked
    #    superseded by it (the audit log already holds every payout.computed).
    """
    ALTER TABLE payouts ADD COLUMN supersedes INTEGER;
    ALTER TABLE payouts ADD COLUMN superseded_by INTEGER;
    ALTER TABLE payouts ADD COLUMN supersede_reason TEXT;
    UPDATE payouts SET superseded_by = (SELECT max(p.id) FROM payouts p WHERE p.release = payouts.release)
        WHERE id < (SELECT max(p.id) FROM payouts p WHERE p.release = payouts.release);
    CREATE UNIQUE INDEX payouts_one_standing_per_release ON payouts (release) WHERE superseded_by IS NULL;
    """,
    # 8: raw submissions are kept only while a person may need them (waiting room, processing,
    #    quarantine until the admin's decision): erase the rest.  The connection has
    #    secure_delete on, and the database is vacuumed after this one (see SCRUBBING).
    """
    -- scrub: erases personal data
    UPDATE contents SET submission = NULL
        WHERE submission IS NOT NULL AND seq IN (SELECT seq FROM contributions
            WHERE state NOT IN ('waiting_room', 'processing', 'quarantined'));
    """,
    # 9: federation follows the release cut.  admitted_in: the release whose cut admitted the
    #    record for peers (public: the one that released it, federation scope: the same gates).
    #    Rows listed before this (listed_seq set) stay listed, since peers hold them, but are
    #    served again only once a cut admits them.  What each origin's latest manifest
    #    declares (embargo, freeze, federation) and the tags and language of listed entries,
    #    for the policy on the peer's side.  embargo NULL: read from the head manifest.
    """
    ALTER TABLE contributions ADD COLUMN admitted_in INTEGER;
    UPDATE contributions SET admitted_in = released_in WHERE released_in IS NOT NULL;
    CREATE INDEX contributions_to_list ON contributions (seq)
        WHERE admitted_in IS NOT NULL AND listed_seq IS NULL;
    ALTER TABLE fed_entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE fed_entries ADD COLUMN language TEXT;
    ALTER TABLE fed_origins ADD COLUMN embargo TEXT;
    ALTER TABLE fed_origins ADD COLUMN quality_freeze INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fed_origins ADD COLUMN federation TEXT;
    """,
    # 10: names claimed first come, first served (members' handles and pseudonyms, compared
    #     folded: NFKC, case, look-alikes), and each member's random default pseudonym.
    #     Members from before get theirs, and their names claimed, at the node's next start
    #     (attribution.upgrade: folding needs Python).  Payouts keep a per-member ledger apart
    #     from the public one.
    """
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
    """,
    # 11: withdrawn content leaves the releases the node still serves.  A tombstone is pending
    #     (revised_at NULL) until every release holding its record was revised; rows from before
    #     are pending too, so an upgraded node revises its old releases at its next start.  A
    #     peer's tombstone remembers the scope its record had in this node's federated releases
    #     (released_scope; NULL: none held it), which decides whether their tombstone lists name it.
    """
    ALTER TABLE tombstones ADD COLUMN revised_at INTEGER;
    ALTER TABLE fed_tombstones ADD COLUMN revised_at INTEGER;
    ALTER TABLE fed_tombstones ADD COLUMN released_scope TEXT;
    CREATE INDEX tombstones_to_revise ON tombstones (uid) WHERE revised_at IS NULL;
    CREATE INDEX fed_tombstones_to_revise ON fed_tombstones (origin, uid) WHERE revised_at IS NULL;
    """,
    # 12: releases cut before anonymity was enforced carry the member's hash on anonymous and
    #     pseudonymous rows: a one-time revision puts every served release in its public form
    #     (coop.node.releases.revision.reform_releases), then the step is struck off.
    """
    CREATE TABLE upgrade_steps (name TEXT PRIMARY KEY) WITHOUT ROWID;
    INSERT INTO upgrade_steps (name) VALUES ('reform-releases');
    """,
    # 13: federation transport: seen request nonces outlive a restart (purged once expired),
    #     refused peer requests and manifests are kept (bounded), and each peer's measured clock
    #     offset (this node's clock minus the peer's, in seconds).
    """
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
    """,
    # 14: members' e-mail addresses: an Open WebUI ingest sent them and the node kept them, yet
    #     nothing reads them (a member is known by provider and id). No longer stored; erased.
    """
    -- scrub: erases e-mail addresses nothing reads
    UPDATE members SET email = NULL WHERE email IS NOT NULL;
    """,
    # 15: a peer's tombstone keeps the hash its entry listed, so the same bytes stay out under
    #     any other origin's entry too (a co-op relisting a withdrawn record as its own).
    """
    ALTER TABLE fed_tombstones ADD COLUMN hash TEXT;
    CREATE INDEX fed_tombstones_by_hash ON fed_tombstones (hash) WHERE hash IS NOT NULL;
    """,
)


# Migrations that erase personal data (marked so in their SQL): on an existing database they
# are followed by VACUUM and a truncating checkpoint, so that neither free pages (text freed
# before secure_delete was on) nor old WAL frames keep what was erased.
SCRUBBING: Final = frozenset(n for n, sql in enumerate(MIGRATIONS, 1) if "-- scrub:" in sql)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet applied; return the schema version reached."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"database schema {version} is newer than this program ({len(MIGRATIONS)})"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if version and SCRUBBING.intersection(range(version + 1, len(MIGRATIONS) + 1)):
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
