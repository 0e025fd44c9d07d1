"""Web sign-in sessions: only a hash is stored, they expire, sign-out ends them, retention purges them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from coop.node.contributions.retention import purge
from coop.node.members.sessions import LIFETIME, end_session, find_session, start_session
from coop.node.web.sessions import check_csrf

from factories import make_member, make_node


def test_a_session_is_found_by_its_cookie_until_it_expires_or_ends(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    now = node.now()
    raw = node.store.write(lambda c: start_session(c, member, now=now))

    stored = node.store.read(lambda c: c.execute("SELECT id_hash FROM web_sessions").fetchall())
    assert stored == [(hashlib.sha256(raw.encode()).hexdigest(),)], "the database keeps only the hash"
    session = node.store.read(lambda c: find_session(c, raw, now=now))
    assert session is not None and session.member == member
    assert (
        check_csrf(session, session.csrf) and not check_csrf(session, "x") and not check_csrf(session, None)
    )
    assert node.store.read(lambda c: find_session(c, raw + "x", now=now)) is None
    assert node.store.read(lambda c: find_session(c, raw, now=now + LIFETIME + 1)) is None, "expired"

    node.store.write(lambda c: end_session(c, raw))
    assert node.store.read(lambda c: find_session(c, raw, now=now)) is None


def test_retention_purges_expired_sessions_and_abandoned_uploads(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node, "ines")
    now = node.now()
    live = node.store.write(lambda c: start_session(c, member, now=now))
    node.store.write(lambda c: start_session(c, member, now=now - LIFETIME - 10))  # signed in long ago
    node.store.write(
        lambda c: c.execute(
            "INSERT INTO web_uploads (id, member_id, data, expires_at) VALUES ('old', ?, x'00', ?), ('new', ?, x'00', ?)",
            (member.id, now - 1, member.id, now + 3600),
        )
    )
    report = node.store.write(lambda c: purge(c, now=now, config=node.config.retention))
    assert (report.web_sessions, report.web_uploads) == (1, 1)
    assert node.store.read(lambda c: find_session(c, live, now=now)) is not None
    left = node.store.read(lambda c: [r[0] for r in c.execute("SELECT id FROM web_uploads")])
    assert left == ["new"]
