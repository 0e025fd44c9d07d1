"""`coop member list` reads members without their secrets: handle, role, joined, credential counts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from coop.node.members.accounts import Role
from coop.node.members.repository import (
    MemberSummary,
    ensure_external_member,
    list_members,
    member_credentials,
)
from coop.node.members.sessions import LIFETIME, start_session

from factories import make_member, make_node


def test_member_list_counts_active_credentials_and_shows_no_secret(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    ada, ada_token = make_member(node, "ada", admin=True)
    ben, ben_token = make_member(node, "ben")
    node.store.write(lambda c: start_session(c, ada, now=1000))
    node.store.write(lambda c: start_session(c, ada, now=1000 + LIFETIME))  # the first then ends
    node.store.write(lambda c: start_session(c, ben, now=1000))
    node.store.write(
        lambda c: member_credentials(c, name="ben", reissue=False)
    )  # revoked: token and sessions
    node.store.write(
        lambda c: ensure_external_member(
            c,
            provider="openwebui",
            external_id="u-1",
            name="Cleo",
            email="cleo@example.org",
            salt=node.salt,
            now=5,
        )
    )

    members = node.store.read(lambda c: list_members(c, now=1001 + LIFETIME))

    by_name = {m.name: m for m in members}
    assert by_name["ada"] == MemberSummary(
        name="ada", role=Role.ADMIN, provider="local", joined=by_name["ada"].joined, tokens=1, web_sessions=1
    )
    assert (by_name["ben"].tokens, by_name["ben"].web_sessions) == (0, 0)
    (external,) = [m for m in members if m.provider == "openwebui"]
    assert (external.role, external.tokens) == (Role.MEMBER, 0)
    text = msgspec.json.encode(members).decode()
    for secret in (ada_token, ben_token, ada.contributor_hash, "cleo@example.org", "u-1"):
        assert secret not in text
    assert '"id"' not in text


def test_member_list_is_oldest_first(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    for name in ("first", "second", "third"):
        make_member(node, name)
    names = [m.name for m in node.store.read(lambda c: list_members(c, now=0))]
    assert names == ["first", "second", "third"]
