"""A node's federation service: manifests from its records, and what it refuses to hand to peers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.federation import check_manifest
from coop.node.collective import Actor, audit_entries
from coop.node.contributions import get_contribution, withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _hash(node: Node, uid: str) -> str:
    digest = node.store.read(
        lambda c: c.execute("SELECT record_sha256 FROM contributions WHERE uid = ?", (uid,)).fetchone()[0]
    )
    return str(digest)


def test_issue_lists_public_and_federation_records_but_never_node_scope(node: Node) -> None:
    member, _ = make_member(node)
    public = contribute(node, member, scope="public")
    federation = contribute(node, member, scope="federation")
    home = contribute(node, member, scope="node")
    process(node)
    report = node.federation.issue(force=True)
    assert report is not None
    assert report.added == 2
    envelope = node.federation.envelope(node.identity.node_id, report.seq)
    verified = check_manifest(envelope, trusted={node.identity.node_id: node.identity.node_id})
    listed = {e.uid for e in verified.manifest.added()}
    assert listed == {public, federation}
    assert home not in envelope.decode() and _hash(node, home) not in str(verified.manifest)


def test_issue_nothing_changed_issues_nothing(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member)
    process(node)
    assert node.federation.issue() is not None
    assert node.federation.issue() is None


def test_issue_after_withdrawal_announces_the_tombstone(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    process(node)
    node.federation.issue()
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))
    report = node.federation.issue()
    assert report is not None
    assert report.tombstones == 1


def test_edit_after_listing_in_a_manifest_makes_a_new_record(node: Node) -> None:
    from coop.node.ids import uuid7
    from coop.node.submission import EditRequest

    member, _ = make_member(node)
    uid = contribute(node, member, scope="federation")
    process(node)
    node.federation.issue()
    new_uid, _, _ = node.edit(member, uid, EditRequest(label="fail"), uuid7())
    assert new_uid != uid  # listed: peers may hold it, so the old one is tombstoned
    old = node.store.read(lambda c: get_contribution(c, uid))
    assert old is not None and old.view.state == "withdrawn"


def test_fetch_refuses_node_scope_embargoed_and_withdrawn_records(node: Node) -> None:
    member, _ = make_member(node)
    shared = contribute(node, member, scope="public")
    home = contribute(node, member, scope="node")
    tagged = contribute(node, member, scope="public", tags=["secret"])
    gone = contribute(node, member, scope="public")
    process(node)
    hashes = {uid: _hash(node, uid) for uid in (shared, home, tagged, gone)}
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.change_settings({"embargo": {"on": True, "tags": ["secret"]}}, actor=Actor("ada", admin=True))
    found, refused = node.federation.fetch(list(hashes.values()))
    assert set(found) == {hashes[shared]}
    assert set(refused) == {hashes[home], hashes[tagged], hashes[gone]}


def test_rotate_key_peers_follow_the_new_key(tmp_path: Path) -> None:
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        a_id = a.identity.node_id
        b.federation.book.pinned[a_id] = a_id
        member, _ = make_member(a)
        contribute(a, member)
        process(a)
        a.federation.issue()
        old_key = a.identity.public_key.hex()
        report = a.federation.rotate_key(actor="local-admin")
        assert a.identity.node_id == a_id  # the id stays; the key changes
        assert a.identity.public_key.hex() != old_key
        contribute(a, member)
        process(a)
        a.federation.issue()
        chain = a.federation.store.chain_after(a_id, 0, 100)
        decisions = b.federation.book.receive(chain, now=a.now())
        assert [d.__class__.__name__ for d in decisions] == ["Accepted"] * 3
        head = b.federation.store.heads()[a_id]
        assert head.seq == report.seq + 1
        assert head.key == a.identity.public_key.hex()
        audit = [e.action for e in a.store.read(audit_entries)]
        assert "identity.rotate" in audit
        # The audit chain still verifies: from the first key (the node id), through the rotation.
        a.cut_release()  # an entry signed with the new key
        report = a.verify_audit()
        assert report, report.problem
        assert report.key == a.identity.public_key.hex()
    finally:
        a.close()
        b.close()
