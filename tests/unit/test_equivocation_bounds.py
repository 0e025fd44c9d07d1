"""Equivocation evidence is bounded, and a node whose own chain was forked stops issuing until its
key is rotated (issue 11, item 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.federation import (
    GENESIS,
    Accepted,
    Book,
    Equivocation,
    GovernanceState,
    MemoryBookStore,
    build_manifest,
    check_manifest,
    seal_manifest,
)
from coop.federation.gossip import MAX_EVIDENCE_SEQS
from coop.governance import Embargo, public_key, sha256_hex
from coop.governance.signing import Signer
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

NOW = 1_900_000_000
STATE = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)
SEED = bytes([7]) * 32
ORIGIN = public_key(SEED).hex()


def _manifest(
    seq: int, prev: str, *, issued_at: int = NOW, rotate_to: bytes | None = None, seed: bytes = SEED
) -> bytes:
    payload = build_manifest(
        origin=public_key(seed).hex(),
        key=public_key(seed).hex(),
        coop="origin",
        seq=seq,
        prev=prev,
        issued_at=issued_at,
        lifetime=86_400,
        release=None,
        added=[],
        complete={},
        tombstones=[],
        state=STATE,
        rotate_to=None if rotate_to is None else public_key(rotate_to).hex(),
    )
    return seal_manifest(payload, [Signer(seed)] if rotate_to is None else [Signer(seed), Signer(rotate_to)])


def _hash(envelope: bytes) -> str:
    return check_manifest(envelope, trusted={ORIGIN: ORIGIN}).hash


def _evidence(book: Book, origin: str = ORIGIN) -> list[tuple[int, str]]:
    return book.store.evidence().get(origin, [])


def test_evidence_at_one_sequence_is_a_pair_however_many_forks_arrive() -> None:
    book = Book("f" * 64, {ORIGIN: ORIGIN}, MemoryBookStore())
    first = _manifest(1, GENESIS)
    assert isinstance(book.receive([first], now=NOW)[0], Accepted)
    for n in range(1, 21):
        (decision,) = book.receive([_manifest(1, GENESIS, issued_at=NOW + n)], now=NOW)
        assert isinstance(decision, Equivocation)
    assert book.store.heads()[ORIGIN].forked
    assert len(_evidence(book)) == 2  # the chain's own and one other: a proof, not a pile
    assert _hash(first) in {h for _, h in _evidence(book)}


def test_evidence_sequences_of_one_origin_are_capped() -> None:
    book = Book("f" * 64, {ORIGIN: ORIGIN}, MemoryBookStore())
    head = _manifest(1, GENESIS)
    book.receive([head], now=NOW)
    # Successors to histories nobody holds, one per sequence, far more than the cap.
    for seq in range(2, 2 + 3 * MAX_EVIDENCE_SEQS):
        book.receive([_manifest(2, f"{seq:064x}")], now=NOW)
        book.receive([_manifest(seq, "a" * 64)], now=NOW)
    seqs = {seq for seq, _ in _evidence(book)}
    assert len(seqs) <= MAX_EVIDENCE_SEQS
    assert len(_evidence(book)) <= 2 * MAX_EVIDENCE_SEQS
    assert book.store.heads()[ORIGIN].forked


def test_own_forked_chain_is_cleared_by_a_rotation_past_the_fork_but_a_peers_is_not() -> None:
    new = bytes([8]) * 32
    for self_id, cleared in ((ORIGIN, True), ("f" * 64, False)):
        book = Book(self_id, {ORIGIN: ORIGIN}, MemoryBookStore())
        one = _manifest(1, GENESIS)
        book.receive([one], now=NOW)
        book.receive([_manifest(2, "a" * 64), _manifest(3, "b" * 64)], now=NOW)  # the fork's sequences
        assert book.store.heads()[ORIGIN].forked
        # A plain successor at the fork's next free sequence is a gap; a rotation chained to the
        # head may skip the sequences the fork took.
        assert not isinstance(book.receive([_manifest(4, _hash(one))], now=NOW)[0], Accepted)
        (decision,) = book.receive([_manifest(4, _hash(one), rotate_to=new)], now=NOW)
        assert isinstance(decision, Accepted), decision
        head = book.store.heads()[ORIGIN]
        assert head.key == public_key(new).hex()
        assert head.forked is not cleared
        # Manifests signed with the retired key no longer verify: the fork cannot come back.
        assert not isinstance(book.receive([_manifest(5, sha256_hex(b"x"))], now=NOW)[0], Accepted)


# -- the node ---------------------------------------------------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _forge_own_successor(node: Node, seq: int, seed: bytes) -> bytes:
    """A manifest of this node's own origin, signed with its key ``seed``, that it never issued."""
    payload = build_manifest(
        origin=node.identity.node_id,
        key=public_key(seed).hex(),
        coop="a copy of this node",
        seq=seq,
        prev="c" * 64,
        issued_at=node.now(),
        lifetime=86_400,
        release=None,
        added=[],
        complete={},
        tombstones=[],
        state=STATE,
    )
    return seal_manifest(payload, [Signer(seed)])


def _own_evidence(node: Node) -> int:
    return len(node.federation.store.evidence().get(node.identity.node_id, []))


def test_node_whose_own_chain_forked_stops_issuing_until_rotation(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member, scope="public")
    process(node)
    node.cut_release()
    first = node.federation.issue(force=True)
    assert first is not None
    assert node.federation.own_fork() is None
    old = bytes(node.data.signing_key())
    forged = _forge_own_successor(node, first.seq + 1, old)
    (decision,) = node.federation.book.receive([forged], now=node.now())
    assert isinstance(decision, Equivocation)
    evidence = _own_evidence(node)
    # New records wait; round after round nothing is issued and no evidence piles up.
    contribute(node, member, scope="public")
    process(node)
    node.cut_release()
    for _ in range(5):
        assert node.federation.issue() is None
        assert node.federation.issue(force=True) is None
    assert _own_evidence(node) == evidence
    why = node.federation.own_fork()
    assert why is not None
    assert f"at sequence {first.seq + 1}" in why
    assert "coop identity rotate" in why
    assert "\n" not in why
    # Recovery: a rotation past the fork clears it; the waiting records are listed next.
    rotation = node.federation.rotate_key(actor="test")
    assert rotation.seq == first.seq + 2
    assert node.federation.own_fork() is None
    listed = node.federation.issue()
    assert listed is not None
    assert listed.seq == rotation.seq + 1
    assert listed.added == 1
    # A manifest signed with the retired key is refused now, not stored as a new fork.
    (again,) = node.federation.book.receive([_forge_own_successor(node, listed.seq + 1, old)], now=node.now())
    assert not isinstance(again, Accepted | Equivocation)
    assert node.federation.own_fork() is None
