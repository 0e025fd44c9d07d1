"""Issue 11 item 12: `coop identity rotate` is one transaction.

The new key waits beside the old one until the node's own book accepts the rotation manifest;
on refusal or any failure it is removed and the old key keeps signing, with a one-line error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coop.federation import Reason, Rejected
from coop.governance import public_key, verify
from coop.node.cli import main
from coop.node.errors import StateError
from coop.node.peering import books, issuance
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path)
    try:
        member, _ = make_member(n)
        contribute(n, member)
        process(n)
        n.cut_release()
        n.federation.issue()
        yield n
    finally:
        n.close()


def _key_files(node: Node) -> dict[str, int]:
    keys = node.data.key_path.parent
    return {p.name: p.stat().st_mode & 0o777 for p in keys.iterdir() if p.name.startswith("node.key")}


def _assert_old_key_still_signs(node: Node, old_seed: bytes, tmp_path: Path) -> None:
    old_public = public_key(old_seed)
    assert node.signer.public_key == public_key(old_seed)
    assert node.identity.public_key == old_public
    assert node.data.key_path.read_bytes() == old_seed
    assert not node.data.staged_key_path.exists()
    assert verify(old_public, b"still me", node.signer.sign(b"still me"))
    # Its own next manifest is accepted (signed by the old key, which its chain still names) ...
    report = node.federation.issue(force=True)
    assert report is not None
    head = node.federation.store.heads()[node.identity.node_id]
    assert head.key == old_public.hex()
    # ... and so is its whole chain by a peer that pinned it.
    peer = make_node(tmp_path, "Peer")
    try:
        origin = node.identity.node_id
        peer.federation.book.pinned[origin] = origin
        chain = node.federation.store.chain_after(origin, 0, 100)
        decisions = peer.federation.book.receive(chain, now=node.now())
        assert {type(d).__name__ for d in decisions} == {"Accepted"}, decisions
    finally:
        peer.close()


def test_rotate_key_refused_by_own_book_keeps_old_key(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_seed = bytes(node.data.signing_key())
    seen: list[dict[str, int]] = []

    def refuse(envelopes: Any, *, now: int) -> list[Any]:
        seen.append(_key_files(node))  # at the moment of the decision: both keys on disk, 0600
        return [Rejected(reason=Reason.UNKNOWN_KEY, detail="refused for the test")]

    monkeypatch.setattr(node.federation.book, "receive", refuse)
    with pytest.raises(StateError, match="refused its own rotation manifest") as caught:
        node.federation.rotate_key(actor="local-admin")
    assert "\n" not in caught.value.message
    assert seen == [{"node.key": 0o600, "node.key.staged": 0o600}]
    monkeypatch.undo()
    assert _key_files(node) == {"node.key": 0o600}  # the new key is gone, nothing retired
    _assert_old_key_still_signs(node, old_seed, tmp_path)


def test_rotate_key_failure_while_sealing_rolls_back(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_seed = bytes(node.data.signing_key())

    def broken(payload: bytes, seeds: Any) -> bytes:
        raise RuntimeError("signing failed")

    monkeypatch.setattr(issuance, "seal_manifest", broken)
    with pytest.raises(RuntimeError, match="signing failed"):
        node.federation.rotate_key(actor="local-admin")
    monkeypatch.undo()
    _assert_old_key_still_signs(node, old_seed, tmp_path)


def test_rotate_key_then_works_after_a_refusal(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    old_public = node.identity.public_key
    monkeypatch.setattr(node.federation.book, "receive", lambda envelopes, *, now: [])
    with pytest.raises(StateError):
        node.federation.rotate_key(actor="local-admin")
    monkeypatch.undo()
    report = node.federation.rotate_key(actor="local-admin")
    assert node.identity.public_key != old_public
    head = node.federation.store.heads()[node.identity.node_id]
    assert head.seq == report.seq and head.key == node.identity.public_key.hex()
    assert not node.data.staged_key_path.exists()
    assert node.federation.issue(force=True) is not None  # signed by the new key, accepted


def test_rotate_key_cut_short_after_acceptance_is_finished_when_the_node_opens(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = node.data.root

    def crash() -> None:
        raise OSError("power cut")

    monkeypatch.setattr(node.data, "commit_staged_key", crash)
    with pytest.raises(OSError, match="power cut"):
        node.federation.rotate_key(actor="local-admin")
    staged = node.data.staged_key()
    assert staged is not None  # accepted and announced: never thrown away
    node.close()
    reopened = Node(root)
    try:
        assert reopened.signer.public_key == public_key(staged)
        head = reopened.federation.store.heads()[reopened.identity.node_id]
        assert head.key == public_key(staged).hex()
        assert not reopened.data.staged_key_path.exists()
        assert reopened.federation.issue(force=True) is not None
    finally:
        reopened.close()


def test_staged_key_never_announced_is_removed_when_the_node_opens(node: Node) -> None:
    root, old_seed = node.data.root, bytes(node.data.signing_key())
    node.data.stage_key()  # a rotation that died before its manifest was accepted
    node.close()
    reopened = Node(root)
    try:
        assert reopened.signer.public_key == public_key(old_seed)
        assert not reopened.data.staged_key_path.exists()
        assert reopened.federation.issue(force=True) is not None
    finally:
        reopened.close()


def test_cli_identity_rotate_refused_prints_one_line_and_keeps_key(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root, old_public = node.data.root, node.identity.public_key
    node.close()
    refusal = [Rejected(reason=Reason.ROLLBACK, detail="refused for the test")]
    monkeypatch.setattr(books.LockedBook, "receive", lambda self, envelopes, *, now: refusal)
    assert main(["identity", "rotate", str(root)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coop: error: this node refused its own rotation manifest")
    assert "rollback" in err
    monkeypatch.undo()
    reopened = Node(root)
    try:
        assert reopened.identity.public_key == old_public
        assert reopened.federation.issue(force=True) is not None
    finally:
        reopened.close()


def test_the_fingerprint_read_aloud_is_the_node_ids_and_survives_a_rotation(node: Node) -> None:
    from coop.governance.signing import fingerprint

    before = node.identity
    assert before.fingerprint == fingerprint(bytes.fromhex(before.node_id))
    node.federation.rotate_key(actor="local-admin")
    after = node.identity
    assert after.public_key != before.public_key and after.node_id == before.node_id
    assert after.fingerprint == before.fingerprint
