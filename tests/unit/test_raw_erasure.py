"""The raw submission is kept only while a person may need it, and erasing it leaves no trace
in the database file, its write-ahead log, or a backup made afterwards (real SQLite files)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.node.contributions import repository as contrib
from coop.node.contributions import rights
from coop.node.contributions.repository import Decision
from coop.node.contributions.submission import ContributionState
from coop.node.members.accounts import Member
from coop.node.runtime import Node
from coop.node.storage.backup import backup
from coop.node.storage.datadir import DataDir
from coop.node.storage.migrations import MIGRATIONS, SCRUBBING, _statements
from coop.node.storage.store import Store

from factories import contribute, make_member, make_node, process

S = ContributionState
MARK = b"zq-marker-"


def _chat(marker: str, *, extra_pii: int = 0) -> str:
    """A chat whose only recognisable raw text is an e-mail the redactor replaces."""
    others = " ".join(f"copy{i}@example.net" for i in range(extra_pii))
    return (
        f"User: Please write to {marker}@example.org about the invoice. {others}\n"
        "Assistant: I will draft a short note about the invoice."
    )


def _files(root: Path) -> dict[str, bytes]:
    found = {}
    for path in (root / "coop.sqlite3", root / "coop.sqlite3-wal"):
        if path.exists():
            found[path.name] = path.read_bytes()
    return found


def _raw(node: Node, uid: str) -> object:
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None
    return detail.submission


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _through_every_exit(node: Node, member: Member) -> dict[str, str]:
    """Each way out of the waiting room, with its own marker; returns marker -> uid."""
    uids = {
        "zq-marker-accepted": contribute(node, member, text=_chat("zq-marker-accepted")),
        "zq-marker-withdrawn-live": contribute(node, member, text=_chat("zq-marker-withdrawn-live")),
        "zq-marker-released": contribute(node, member, text=_chat("zq-marker-released", extra_pii=6)),
        "zq-marker-rejected": contribute(node, member, text=_chat("zq-marker-rejected", extra_pii=6)),
    }
    process(node)
    assert _raw(node, uids["zq-marker-accepted"]) is None  # the redacted record alone is kept
    for held in ("zq-marker-released", "zq-marker-rejected"):
        detail = node.store.read(lambda c, uid=uids[held]: contrib.get_contribution(c, uid))
        assert detail is not None and detail.view.state is S.QUARANTINED
        assert detail.submission is not None  # kept for the admin's review
    assert node.decide_quarantine(uids["zq-marker-released"], Decision.RELEASE, admin="admin") is S.ACCEPTED
    assert node.decide_quarantine(uids["zq-marker-rejected"], Decision.REJECT, admin="admin") is S.REJECTED
    node.cut_release()
    now = node.now()
    for marker in ("zq-marker-withdrawn-live",):
        node.store.write(
            lambda c, uid=uids[marker]: rights.withdraw_contribution(c, uid=uid, member=member, now=now)
        )
    waiting = contribute(node, member, text=_chat("zq-marker-withdrawn-waiting"))
    node.store.write(lambda c: rights.withdraw_contribution(c, uid=waiting, member=member, now=now))
    uids["zq-marker-withdrawn-waiting"] = waiting
    return uids


def test_raw_submission_after_every_exit_is_erased_from_database_and_wal(node: Node) -> None:
    member, _ = make_member(node)
    uids = _through_every_exit(node, member)

    for marker, uid in uids.items():
        assert _raw(node, uid) is None, marker
    # The node is still open: the erasures themselves must have left no page image behind.
    files = _files(node.data.root)
    assert files["coop.sqlite3"]
    for name, data in files.items():
        assert MARK not in data, f"raw text left in {name}"
    node.close()
    for name, data in _files(node.data.root).items():
        assert MARK not in data, f"raw text left in {name} after close"


def test_raw_submission_quarantined_is_kept_until_the_admins_decision(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, text=_chat("zq-marker-held", extra_pii=6))
    process(node)
    assert _raw(node, uid) is not None
    assert MARK in b"".join(_files(node.data.root).values())


def test_backup_after_erasure_carries_no_raw_text(node: Node, tmp_path: Path) -> None:
    member, _ = make_member(node)
    _through_every_exit(node, member)
    out = tmp_path / "backup"

    report = backup(DataDir.open(node.data.root), out)

    assert report.integrity == "ok"
    assert MARK not in (out / "coop.sqlite3").read_bytes()


def test_edit_after_processing_starts_from_the_redacted_record(node: Node) -> None:
    from coop.governance import Label
    from coop.node.contributions.submission import EditRequest
    from coop.node.ids import uuid7

    member, _ = make_member(node)
    uid = contribute(node, member, text=_chat("zq-marker-edited"))
    process(node)

    new_uid, state, _ = node.edit(member, uid, EditRequest(label=Label.FAIL), uuid7())

    assert (new_uid, state) == (uid, S.WAITING)
    edited = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert edited is not None and edited.submission is not None
    assert "[EMAIL]" in edited.submission.chat.messages[0].content
    process(node)
    assert MARK not in b"".join(_files(node.data.root).values())


def test_migration_erases_raw_text_of_processed_rows_and_vacuums_free_pages(tmp_path: Path) -> None:
    number = min(SCRUBBING)
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA secure_delete = OFF")  # as every node ran before this fix
        for script in MIGRATIONS[: number - 1]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO members (id, name, role, provider, external_id, contributor_hash, created_at)"
            " VALUES (1, 'old', 'member', 'local', 'x', 'h', 1)"
        )
        for seq, state in ((1, "accepted"), (2, "released"), (3, "waiting_room"), (4, "quarantined")):
            conn.execute(
                "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
                " license, ai_use, scope, eval, tags) VALUES (?, ?, 1, ?, 'api', 1, 1, 'good', 'CC0-1.0', '',"
                " 'public', 'y', '[]')",
                (seq, f"u{seq}", state),
            )
            marker = b"zq-marker-" if state in ("accepted", "released") else b"kept-raw-"
            conn.execute(
                "INSERT INTO contents (seq, submission) VALUES (?, ?)", (seq, marker + b"x" * 20_000)
            )
        # Text freed before secure_delete existed still sits in free pages.
        conn.execute("CREATE TABLE scratch (b BLOB)")
        conn.execute("INSERT INTO scratch VALUES (?)", (b"zq-marker-freed" * 3000,))
        conn.execute("DROP TABLE scratch")
        conn.execute(f"PRAGMA user_version = {number - 1}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    assert MARK in path.read_bytes()

    store = Store(path)
    try:
        kept = store.read(
            lambda c: [r[0] for r in c.execute("SELECT seq FROM contents WHERE submission IS NOT NULL")]
        )
    finally:
        store.close()

    assert kept == [3, 4]
    assert MARK not in path.read_bytes()
    assert b"kept-raw-" in path.read_bytes()


def test_migration_erases_stored_email_addresses(tmp_path: Path) -> None:
    number = next(n for n, sql in enumerate(MIGRATIONS, 1) if "e-mail" in sql and "-- scrub:" in sql)
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for script in MIGRATIONS[: number - 1]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO members (id, name, role, provider, external_id, email, contributor_hash, created_at)"
            " VALUES (1, 'old', 'member', 'openwebui', 'x', 'zq-marker@example.org', 'h', 1)"
        )
        conn.execute(f"PRAGMA user_version = {number - 1}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    assert b"zq-marker@example.org" in path.read_bytes()

    store = Store(path)
    try:
        emails = store.read(lambda c: [r[0] for r in c.execute("SELECT email FROM members")])
    finally:
        store.close()
    assert emails == [None]
    assert b"zq-marker@example.org" not in b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("old.sqlite3")
    )
