"""Revoking credentials and unpinning peers from the command line: what a compromise response needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coop.node.members.repository import add_integration, integration_by_key, member_by_token
from coop.node.members.sessions import find_session, start_session
from coop.node.runtime import Node

from factories import make_member, make_node
from nodeproc import coop

pytestmark = pytest.mark.integration


def test_member_revoke_and_token_and_integration_revoke(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, token = make_member(node, "robin")
        now = node.now()
        session = node.store.write(lambda c: start_session(c, member, now=now))
        _, key = node.store.write(lambda c: add_integration(c, name="owui", now=now))
        root = node.data.root
    finally:
        node.close()

    revoked = coop("member", "revoke", str(root), "robin")
    assert "revoked robin's token" in revoked.stdout
    node = Node(root)
    try:
        assert node.store.read(lambda c: member_by_token(c, token)) is None
        assert node.store.read(lambda c: find_session(c, session, now=node.now())) is None
    finally:
        node.close()

    fresh = json.loads(coop("member", "token", str(root), "robin", "--json").stdout)["token"]
    assert fresh and fresh != token
    coop("integration", "revoke", str(root), "owui")
    node = Node(root)
    try:
        found = node.store.read(lambda c: member_by_token(c, fresh))
        assert found is not None and found.name == "robin"
        assert node.store.read(lambda c: integration_by_key(c, key)) is None
        actions = node.store.read(lambda c: [r[0] for r in c.execute("SELECT action FROM audit_log")])
        assert {"member.revoke", "member.token", "integration.revoke"} <= set(actions)
        assert node.verify_audit()
    finally:
        node.close()
    unknown = coop("member", "revoke", str(root), "nobody", check=False)
    assert (
        unknown.returncode != 0 and unknown.stderr.startswith("coop: error:") and "nobody" in unknown.stderr
    )


def test_peers_remove_unpins_and_a_new_key_can_be_pinned(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    root = node.data.root
    node.close()
    old, new = "ab" * 32, "cd" * 32
    coop("peers", "add", str(root), "http://127.0.0.1:9", "--key", old)
    out = coop("peers", "remove", str(root), old[:12]).stdout
    assert out.startswith(f"unpinned {old[:16]}")
    assert json.loads(coop("peers", "list", str(root), "--json").stdout) == []
    # After a compromise the peer comes back under a new key, at the same address.
    coop("peers", "add", str(root), "http://127.0.0.1:9", "--key", new)
    peers = json.loads(coop("peers", "list", str(root), "--json").stdout)
    assert [p["node_id"] for p in peers] == [new]
    missing = coop("peers", "remove", str(root), old[:12], check=False)
    assert missing.returncode != 0 and "no pinned peer" in missing.stderr
