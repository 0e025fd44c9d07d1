"""A node's federation service: manifests from its records, and what it refuses to hand to peers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.federation import check_manifest
from coop.governance import Choice, Label, PolicyError, ProposalStatus, public_key
from coop.node.collective.audit import audit_entries
from coop.node.collective.settings import Actor
from coop.node.contributions.repository import get_contribution
from coop.node.contributions.rights import withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _pin(node: Node, other: Node) -> str:
    """Pin ``other`` as a peer of ``node`` (no network: the tests hand manifests and records over)."""
    other_id = other.identity.node_id
    node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")
    return other_id


def _stranger() -> str:
    """The node id of a co-op nobody pinned."""
    return public_key(bytes(range(32))).hex()


def _hash(node: Node, uid: str) -> str:
    digest = node.store.read(
        lambda c: c.execute("SELECT record_sha256 FROM contributions WHERE uid = ?", (uid,)).fetchone()[0]
    )
    return str(digest)


def test_issue_lists_public_and_federation_records_but_never_node_scope(node: Node, tmp_path: Path) -> None:
    peer = make_node(tmp_path, "Peer")
    _pin(node, peer)
    peer.close()
    member, _ = make_member(node)
    public = contribute(node, member, scope="public")
    federation = contribute(node, member, scope="federation")
    home = contribute(node, member, scope="node")
    process(node)
    node.cut_release()
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
    uid = contribute(node, member, scope="public")
    process(node)
    node.cut_release()
    node.federation.issue()
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))
    report = node.federation.issue()
    assert report is not None
    assert report.tombstones == 1


def test_edit_after_listing_in_a_manifest_makes_a_new_record(node: Node, tmp_path: Path) -> None:
    from coop.node.contributions.submission import EditRequest
    from coop.node.ids import uuid7

    peer = make_node(tmp_path, "Peer")
    _pin(node, peer)
    peer.close()
    member, _ = make_member(node)
    uid = contribute(node, member, scope="federation")
    process(node)
    node.cut_release()
    node.federation.issue()
    new_uid, _, _ = node.edit(member, uid, EditRequest(label=Label.FAIL), uuid7())
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
    node.cut_release()
    hashes = {uid: _hash(node, uid) for uid in (shared, home, tagged, gone)}
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.change_settings({"embargo": {"on": True, "tags": ["secret"]}}, actor=Actor("ada", admin=True))
    found, refused = node.federation.fetch(list(hashes.values()), requester=_stranger())
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
        a.cut_release()
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


# -- federation follows the release cut (issue 10, defects 6 and 8) ----------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two co-ops that pinned each other: A (the origin) and B (its peer)."""
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        _pin(a, b)
        _pin(b, a)
        yield a, b
    finally:
        a.close()
        b.close()


def _receive(origin: Node, peer: Node) -> None:
    """``peer`` takes every manifest of ``origin`` (as gossip would hand them over)."""
    chain = origin.federation.store.chain_after(origin.identity.node_id, 0, 1000)
    peer.federation.book.receive(chain, now=origin.now())


def _pull(server: Node, peer: Node) -> set[str]:
    """``peer`` pulls the records it wants from ``server``; returns the uids it now holds."""
    wanted = peer.federation.book.record_wants()
    got, _ = server.federation.fetch([e.hash for _, e in wanted], requester=peer.identity.node_id)
    peer.federation.book.receive_records(wanted, got)
    return _held(peer)


def _held(peer: Node) -> set[str]:
    rows = peer.store.read(lambda c: c.execute("SELECT uid FROM mirror_records").fetchall())
    return {r[0] for r in rows}


def _listed(origin: Node, peer: Node) -> set[str]:
    return set(peer.federation.store.entries(origin.identity.node_id))


def _federated_uids(node: Node) -> set[str]:
    summary = node.cut_federated_release()
    folder = node.data.releases_path / "federated" / summary.name
    return {
        json.loads(line)["uid"]
        for path in folder.glob("*/data.jsonl")
        for line in path.read_text().splitlines()
    }


def _wanted(peer: Node) -> set[str]:
    return {entry.uid for _, entry in peer.federation.book.record_wants()}


def test_accepted_but_unreleased_record_is_neither_listed_nor_pullable(pair: tuple[Node, Node]) -> None:
    a, b = pair
    member, _ = make_member(a)
    public = contribute(a, member, scope="public")
    federation = contribute(a, member, scope="federation")
    process(a)
    report = a.federation.issue(force=True)
    assert report is not None and report.added == 0
    hashes = [_hash(a, public), _hash(a, federation)]
    found, refused = a.federation.fetch(hashes, requester=b.identity.node_id)
    assert found == {} and set(refused) == set(hashes)
    a.cut_release()  # the cut admits both: the public one released, the federation one for peers
    report = a.federation.issue()
    assert report is not None and report.added == 2
    _receive(a, b)
    assert _pull(a, b) == {public, federation}


def test_quality_freeze_lists_nothing_new_and_peers_stop_pulling_and_publishing(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    admin = Actor("ada", admin=True)
    member, _ = make_member(a)
    flowed = contribute(a, member, scope="public")
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _pull(a, b) == {flowed}  # admitted while no freeze: it flows
    assert flowed in _federated_uids(b)
    listed = contribute(a, member, scope="public")  # admitted and listed, not yet pulled
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _wanted(b) == {listed}
    accepted = contribute(a, member, scope="federation")  # accepted before the freeze, no cut yet
    process(a)
    a.change_settings({"quality_freeze": True}, actor=admin)
    with pytest.raises(PolicyError):
        a.cut_release()
    report = a.federation.issue()
    assert report is not None and report.added == 0  # the new state, nothing new listed
    _receive(a, b)
    assert accepted not in _listed(a, b)
    assert _wanted(b) == set()  # b stops pulling a's records
    found, _ = a.federation.fetch([_hash(a, listed)], requester=b.identity.node_id)
    assert found == {}
    assert _federated_uids(b) == set()  # and stops publishing them
    a.change_settings({"quality_freeze": False}, actor=admin)
    during = contribute(a, member, scope="public")
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _pull(a, b) == {flowed, listed, accepted, during}
    assert _federated_uids(b) == {flowed, listed, during}


@pytest.mark.parametrize("embargo", [{"on": True}, {"on": True, "tags": ["secret"]}], ids=["whole", "by-tag"])
def test_embargo_set_after_listing_stops_peer_pulls_and_its_federated_release(
    pair: tuple[Node, Node], embargo: dict[str, object]
) -> None:
    a, b = pair
    member, _ = make_member(a)
    plain_held = contribute(a, member, scope="public")
    tagged_held = contribute(a, member, scope="public", tags=["secret"])
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _pull(a, b) == {plain_held, tagged_held}
    plain_new = contribute(a, member, scope="public")
    tagged_new = contribute(a, member, scope="public", tags=["secret"])
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)  # listed, not yet pulled
    a.change_settings({"embargo": embargo}, actor=Actor("ada", admin=True))
    a.federation.issue()
    _receive(a, b)
    whole = "tags" not in embargo
    assert _wanted(b) == (set() if whole else {plain_new})
    assert _federated_uids(b) == (set() if whole else {plain_held})
    # b no longer hands the embargoed copy it holds to anyone either
    found, _ = b.federation.fetch([_hash(a, tagged_held)], requester=a.identity.node_id)
    assert found == {}
    assert tagged_new not in _pull(a, b)


def test_volume_cap_holds_at_the_peer(pair: tuple[Node, Node]) -> None:
    a, b = pair
    member, _ = make_member(a)
    proposal = a.propose({"volume_cap.monthly_records": 2}, reason="pace", actor=Actor("ada", admin=True))
    assert a.vote(proposal.id, member, Choice.YES).status is ProposalStatus.PASSED
    first = contribute(a, member, scope="public")
    second = contribute(a, member, scope="federation")
    later = [contribute(a, member, scope=scope) for scope in ("public", "federation", "public")]
    process(a)
    a.cut_release()
    a.cut_release()  # the month's cap is spent: the second cut admits nothing
    a.federation.issue()
    _receive(a, b)
    assert _listed(a, b) == {first, second}
    assert _pull(a, b) == {first, second}
    assert _federated_uids(b) == {first}
    for uid in later:
        found, _ = a.federation.fetch([_hash(a, uid)], requester=b.identity.node_id)
        assert found == {}


def test_federation_scope_reaches_the_origins_pinned_peers_only(tmp_path: Path) -> None:
    """A pinned B; B pinned A and C; C pinned B and trusts A's key, but A never pinned C."""
    a, b, c = make_node(tmp_path, "A"), make_node(tmp_path, "B"), make_node(tmp_path, "C")
    try:
        _pin(a, b)
        _pin(b, a)
        _pin(b, c)
        _pin(c, b)
        _pin(c, a)
        member, _ = make_member(a)
        public = contribute(a, member, scope="public")
        federation = contribute(a, member, scope="federation")
        process(a)
        a.cut_release()
        a.federation.issue()
        _receive(a, b)
        assert _pull(a, b) == {public, federation}
        _receive(a, c)  # a's manifests, relayed by b
        assert _wanted(c) == {public}  # c is outside a's federation: it does not ask for the body
        found, refused = b.federation.fetch(
            [_hash(a, public), _hash(a, federation)], requester=c.identity.node_id
        )
        assert set(found) == {_hash(a, public)} and refused == [_hash(a, federation)]
        assert _pull(b, c) == {public}
        assert _federated_uids(b) == {public}  # federation scope is never public
        assert _federated_uids(c) == {public}
    finally:
        for node in (a, b, c):
            node.close()


def test_heads_stored_before_the_declared_state_was_kept_read_it_from_the_manifest(
    pair: tuple[Node, Node], tmp_path: Path
) -> None:
    a, b = pair
    a.change_settings({"quality_freeze": True}, actor=Actor("ada", admin=True))
    a.federation.issue()
    _receive(a, b)
    a_id = a.identity.node_id
    b.store.write(
        lambda c: c.execute("UPDATE fed_origins SET embargo = NULL, quality_freeze = 0, federation = NULL")
    )
    again = Node(b.data.root)
    try:
        head = again.federation.store.heads()[a_id]
        assert head.quality_freeze and head.federation == (b.identity.node_id,)
    finally:
        again.close()


def test_migration_keeps_old_listings_and_admits_only_what_a_cut_released() -> None:
    import sqlite3

    from coop.node.storage.migrations import MIGRATIONS, _statements, migrate

    number = next(i for i, sql in enumerate(MIGRATIONS, 1) if "ADD COLUMN admitted_in" in sql)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for sql in MIGRATIONS[: number - 1]:
            for statement in _statements(sql):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number - 1}")
        rows = [
            ("released", "public", 1, 1),  # released by v1 and listed
            ("accepted", "federation", None, 1),  # listed on acceptance by older code
            ("accepted", "public", None, None),  # accepted, never cut
        ]
        for seq, (state, scope, released_in, listed_seq) in enumerate(rows, 1):
            conn.execute(
                "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
                " license, ai_use, scope, eval, tags, released_in, listed_seq)"
                " VALUES (?, ?, 1, ?, 'api', 0, 0, 'good', 'CC-BY-4.0', 'train-ai=y', ?, 'y', '[]', ?, ?)",
                (seq, f"u{seq}", state, scope, released_in, listed_seq),
            )
        migrate(conn)
        got = conn.execute("SELECT uid, admitted_in, listed_seq FROM contributions ORDER BY seq").fetchall()
    finally:
        conn.close()
    # Listed rows stay listed (peers hold them); only a cut's release counts as admission.
    assert got == [("u1", 1, 1), ("u2", None, 1), ("u3", None, None)]


def test_tombstone_erases_the_mirrored_text_from_the_peers_database_files(pair: tuple[Node, Node]) -> None:
    """A withdrawal reaches the mirror: its copy is deleted, and no image of it stays in the files."""
    a, b = pair
    member, _ = make_member(a)
    marker = "zqmirrormarker"
    uid = contribute(
        a, member, scope="public", text=f"User: tell me about {marker}.\nAssistant: {marker} is rare."
    )
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    assert _pull(a, b) == {uid}
    a.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=a.now()))
    a.federation.issue()
    _receive(a, b)
    assert _held(b) == set()
    for path in b.data.root.glob("coop.sqlite3*"):
        assert marker.encode() not in path.read_bytes(), f"{path.name} still holds the withdrawn text"
