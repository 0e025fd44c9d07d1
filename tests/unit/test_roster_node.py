"""The federation roster on a node: trust follows the roster, manifests name it, gossip carries it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.federation import Book, Head, MemoryBookStore, collective_state
from coop.federation.gossip import _may_relay
from coop.federation.manifest import PAYLOAD_TYPE, GovernanceState, build_manifest
from coop.federation.protocol import SummaryMessage
from coop.federation.roster import (
    Admit,
    Member,
    Remove,
    RosterRef,
    SetThreshold,
    Trusted,
    Update,
    add_signature,
    create_roster,
    next_version,
    roster_bytes,
    sign_envelope,
    trust_root,
    verify_update,
)
from coop.federation.roster_gossip import (
    MAX_PROPOSALS_PER_KEY,
    PROPOSAL_LIFETIME,
    MemoryRosterStore,
    RosterBook,
    RosterDigest,
)
from coop.governance import Embargo
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.collective.audit import audit_entries
from coop.node.errors import InputError
from coop.node.runtime import Node

from factories import make_node

SIGNERS = [Signer(bytes([i + 1]) * 32) for i in range(3)]
FED = "cd" * 16
NOW = 1_700_000_000


def _member(i: int) -> Member:
    key = SIGNERS[i].public_key.hex()
    return Member(id=key, key=key, name=f"c{i}", url=f"http://127.0.0.1:{9000 + i}")


def _books() -> tuple[RosterBook, RosterBook, str]:
    """Two roster books on version 1; the first also holds a proposal admitting member 1."""
    root = create_roster(
        federation=FED, name="f", founder=_member(0), threshold=1, expires_at=NOW + 10_000, signer=SIGNERS[0]
    )
    first, second = RosterBook(MemoryRosterStore()), RosterBook(MemoryRosterStore())
    first.trust([root])
    second.trust([root])
    payload = roster_bytes(next_version(root, [Admit(_member(1))]))
    first.offer(sign_envelope(payload, [SIGNERS[0]]))
    (proposal,) = first.proposals()
    return first, second, proposal


def test_roster_gossip_proposal_travels_and_signatures_merge_into_the_next_version() -> None:
    first, second, proposal = _books()
    assert first.tag() != second.tag()
    versions, proposals = first.items_for(second.digest())
    assert not versions and len(proposals) == 1
    second.receive(versions, proposals, now=NOW)
    assert first.tag() == second.tag()
    # The admitted co-op signs its copy; the merged signatures adopt version 2 on both sides.
    second.offer(add_signature(second.proposals()[proposal].data, SIGNERS[1]))
    assert second.current is not None and second.current.roster.version == 2
    versions, proposals = second.items_for(first.digest())
    first.receive(versions, proposals, now=NOW)
    assert first.current is not None and first.current.hash == second.current.hash
    assert first.proposals() == {} and first.tag() == second.tag()


def test_roster_gossip_refuses_a_stranger_proposal_and_another_federation() -> None:
    first, second, _ = _books()
    stranger = Signer(b"\x09" * 32)
    root = first.chain()[0]
    payload = roster_bytes(
        next_version(
            root,
            [
                Admit(
                    Member(
                        id=stranger.public_key.hex(),
                        key=stranger.public_key.hex(),
                        name="x",
                        url="http://127.0.0.1:1",
                    )
                )
            ],
        )
    )
    receipt = second.receive([], [sign_envelope(payload, [stranger])], now=NOW)
    assert receipt.merged == 0 and receipt.refused
    other = RosterBook(MemoryRosterStore())
    other.trust(
        [
            create_roster(
                federation="ef" * 16,
                name="g",
                founder=_member(2),
                threshold=1,
                expires_at=NOW + 9,
                signer=SIGNERS[2],
            )
        ]
    )
    assert first.items_for(other.digest()) == ([], [])


def test_book_summary_follows_the_roster_and_stays_small_when_idle() -> None:
    book = Book("aa" * 32, {}, MemoryBookStore())
    bare = book.summary()
    first, _, _ = _books()
    book.roster = first
    with_roster = book.summary()
    assert with_roster != bare
    assert len(msgspec.json.encode(SummaryMessage(with_roster))) <= 128


def test_collective_state_and_relay_treat_the_roster_members_as_the_federation() -> None:
    members = frozenset({"11" * 32, "22" * 32})
    head = Head(seq=1, hash="0" * 64, key="11" * 32, embargo=Embargo(), roster=FED)
    assert collective_state(head, {FED: members}).federation == members
    assert collective_state(head).federation == frozenset()  # an unknown roster reaches no one
    heads = {"11" * 32: head}
    assert _may_relay("11" * 32, "22" * 32, "33" * 32, heads, {FED: members})
    assert not _may_relay("11" * 32, "44" * 32, "33" * 32, heads, {FED: members})
    assert not _may_relay("11" * 32, "22" * 32, "33" * 32, heads)


def test_manifest_without_a_roster_has_the_old_bytes_and_with_one_names_it() -> None:
    state = GovernanceState(
        settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
    )
    common = {
        "origin": "11" * 32,
        "key": "11" * 32,
        "coop": "c",
        "seq": 1,
        "prev": "0" * 64,
        "issued_at": NOW,
        "lifetime": 100,
        "release": None,
        "added": [],
        "complete": {},
        "tombstones": [],
        "state": state,
    }
    assert b"roster" not in build_manifest(**common, federation=[])  # type: ignore[arg-type]
    named = build_manifest(**common, roster=RosterRef(federation=FED, version=3))  # type: ignore[arg-type]
    assert b'"roster":{"federation":"' + FED.encode() + b'","version":3}' in named


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def test_node_roster_members_are_trusted_and_name_the_federation(node: Node, tmp_path: Path) -> None:
    keeper = node.federation.roster
    trusted = keeper.create("fed", actor="test")
    other = make_node(tmp_path, "Other")
    try:
        other_id = other.identity.node_id
        assert other.federation.roster.join(trusted.envelope, actor="test").roster.version == 1
        proposal = keeper.propose(
            [Admit(Member(id=other_id, key=other_id, name="o", url="http://127.0.0.1:9"))], actor="test"
        )
        result = other.federation.roster.sign(keeper.export_proposal(proposal), actor="test")
        assert result["adopted"] and result["version"] == 2
        keeper.join(other.federation.roster.export(), actor="test")
    finally:
        other.close()
    node.federation.refresh_pins()
    # Trusted (requests and manifests) though never pinned; the federation is the roster's.
    assert node.federation.node_of(other_id) == other_id
    assert node.federation.federation() == (other_id,)
    report = node.federation.issue(force=True)
    assert report is not None
    (envelope,) = node.federation.store.envelopes(node.identity.node_id, [report.hash])
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 20)
    named = msgspec.json.decode(payload)
    assert named["roster"] == {"federation": trusted.roster.federation, "version": 2}
    assert named["federation"] is None  # not the list of ids
    actions = [e.action for e in node.store.read(audit_entries)]
    assert {"roster.create", "roster.propose", "roster.adopt"} <= set(actions)


def test_node_roster_join_refuses_an_under_signed_root(node: Node) -> None:
    root = create_roster(
        federation=FED, name="f", founder=_member(0), threshold=1, expires_at=NOW + 10, signer=SIGNERS[1]
    )
    with pytest.raises(InputError):
        node.federation.roster.join(root.envelope, actor="test")


@pytest.mark.parametrize("name", ["bad\nline", "esc\x1b[31m", "", "x" * 201, "rtl\u202eover"])
def test_a_roster_name_with_control_characters_or_out_of_range_is_refused(name: str) -> None:
    """A name is shown on terminals and pages: one line, no control or format characters."""
    from coop.federation.errors import RosterError
    from coop.federation.roster import Member, create_roster

    signer = Signer(bytes(range(32)))
    key = signer.public_key.hex()
    founder = Member(id=key, key=key, name="A", url="http://127.0.0.1:1")
    with pytest.raises(RosterError):
        create_roster(
            federation="0" * 32, name=name, founder=founder, threshold=1, expires_at=10**9, signer=signer
        )
    bad_member = Member(id=key, key=key, name=name, url="http://127.0.0.1:1")
    with pytest.raises(RosterError):
        create_roster(
            federation="0" * 32, name="ok", founder=bad_member, threshold=1, expires_at=10**9, signer=signer
        )
    spaced = Member(id=key, key=key, name="A", url="http://127.0.0.1:1/\nfake")
    with pytest.raises(RosterError):
        create_roster(
            federation="0" * 32, name="ok", founder=spaced, threshold=1, expires_at=10**9, signer=signer
        )


# -- the hostile-peer review (issue 14): flood, reload cost, freeze, equivocation --------------


def _root_of_three() -> tuple[Trusted, Trusted]:
    """Version 1 (member 0 alone) and version 2 (members 0-2, threshold 2)."""
    root = create_roster(
        federation=FED, name="f", founder=_member(0), threshold=1, expires_at=NOW + 10_000, signer=SIGNERS[0]
    )
    payload = roster_bytes(next_version(root, [Admit(_member(1)), Admit(_member(2)), SetThreshold(2)]))
    return root, verify_update(root, sign_envelope(payload, SIGNERS[:3]))


def _junk(second: Trusted, i: int, signer: Signer) -> bytes:
    payload = roster_bytes(next_version(second, [Update(_member(1).id, name=f"junk{i}")]))
    return sign_envelope(payload, [signer])


def test_roster_one_member_flooding_proposals_keeps_two_and_cannot_block_a_change() -> None:
    root, second = _root_of_three()
    book = RosterBook(MemoryRosterStore())
    book.trust([root, second])
    for i in range(MAX_PROPOSALS_PER_KEY * 10):
        book.offer(_junk(second, i, SIGNERS[1]))
    assert len(book.proposals()) == MAX_PROPOSALS_PER_KEY  # its newest two
    # Another member may still propose, and a change that verifies is adopted whatever is pending.
    assert book.offer(_junk(second, 99, SIGNERS[0])) == 1
    removal = roster_bytes(next_version(second, [Remove(_member(1).id)]))
    book.receive([], [sign_envelope(removal, [SIGNERS[0], SIGNERS[2]])], now=NOW)
    assert book.current is not None and book.current.roster.version == 3
    assert _member(1).id not in book.current.roster.ids()


def test_roster_flood_exchange_settles_and_nothing_is_sent_again() -> None:
    root, second = _root_of_three()
    a, b = RosterBook(MemoryRosterStore()), RosterBook(MemoryRosterStore())
    a.trust([root, second])
    b.trust([root, second])
    for i in range(16):  # the old table's size: each side full of the other's unknowns
        a.offer(_junk(second, i, SIGNERS[1]))
        b.offer(_junk(second, 100 + i, SIGNERS[1]))
    sent: list[int] = []
    for _ in range(3):
        versions, proposals = a.items_for(b.digest())
        b.receive(versions, proposals, now=NOW)
        back_v, back_p = b.items_for(a.digest())
        a.receive(back_v, back_p, now=NOW)
        sent.append(len(versions + proposals + back_v + back_p))
    assert sent[-1] == 0


def test_roster_reload_reads_only_the_newest_version_and_only_when_the_store_changed() -> None:
    root, second = _root_of_three()

    class Counting(MemoryRosterStore):
        reads = 0

        def versions(self) -> list[bytes]:
            raise AssertionError("the whole chain is never read by gossip")

        def newest(self) -> bytes | None:
            Counting.reads += 1
            return super().newest()

    book = RosterBook(Counting())
    book.trust([root, second])
    before = Counting.reads
    for _ in range(5):
        book.reload()
        book.digest()
        book.members()
    assert Counting.reads == before
    assert book.items_for(RosterDigest(federation=FED, version=1))[0] == [second.envelope]


def test_roster_frozen_trusts_no_member_and_names_no_scope() -> None:
    root, second = _root_of_three()
    clock = [NOW]
    book = RosterBook(MemoryRosterStore(), clock=lambda: clock[0])
    book.trust([root, second])
    assert len(book.members()) == 3 and book.scopes()
    clock[0] = second.roster.expires_at
    assert book.frozen() and book.members() == {} and book.scopes() == {}


def test_roster_equivocation_is_kept_as_evidence_and_tags_converge() -> None:
    root = create_roster(
        federation=FED, name="f", founder=_member(0), threshold=1, expires_at=NOW + 10_000, signer=SIGNERS[0]
    )
    a, b = RosterBook(MemoryRosterStore()), RosterBook(MemoryRosterStore())
    a.trust([root])
    b.trust([root])
    for book, name in ((a, "A"), (b, "B")):
        payload = roster_bytes(next_version(root, [Update(_member(0).id, name=name)]))
        book.receive([sign_envelope(payload, [SIGNERS[0]])], [], now=NOW)
    assert a.current is not None and b.current is not None and a.current.hash != b.current.hash
    sent: list[int] = []
    for _ in range(3):
        versions, proposals = a.items_for(b.digest())
        b.receive(versions, proposals, now=NOW)
        back_v, back_p = b.items_for(a.digest())
        a.receive(back_v, back_p, now=NOW)
        sent.append(len(versions + back_v))
    assert set(a.forks()) == set(b.forks()) == {a.current.hash, b.current.hash}
    assert a.tag() == b.tag() and sent[-1] == 0
    assert a.current.roster.members[0].name == "A"  # never switched


def test_roster_proposals_expire_and_a_withdrawn_one_is_not_sent_again() -> None:
    root, second = _root_of_three()
    a, b = RosterBook(MemoryRosterStore()), RosterBook(MemoryRosterStore())
    a.trust([root, second])
    b.trust([root, second])
    a.offer(_junk(second, 1, SIGNERS[0]), now=NOW)
    (pid,) = a.proposals()
    # The sooner of its roster's expiry and 30 days after it came.
    assert a.proposal_expiry(pid) == min(second.roster.expires_at, NOW + PROPOSAL_LIFETIME)
    b.receive(*a.items_for(b.digest()), now=NOW)
    b.withdraw(pid)
    assert pid in b.digest().refused and a.items_for(b.digest()) == ([], [])
    a.receive([], [], now=min(second.roster.expires_at, NOW + PROPOSAL_LIFETIME))
    assert a.proposals() == {}


def test_roster_repeated_signatures_of_one_key_are_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import coop.governance.envelope as envelope_module

    root, _ = _root_of_three()
    data = msgspec.json.decode(root.envelope)
    data["signatures"] = data["signatures"] * 200
    calls = []
    real = envelope_module.verify
    monkeypatch.setattr(envelope_module, "verify", lambda *a: calls.append(1) or real(*a))
    trusted, _ = trust_root(msgspec.json.encode(data), now=NOW)
    assert trusted.hash == root.hash and len(calls) == 1


def test_node_roster_withdraw_frozen_and_cheap_view(node: Node, tmp_path: Path) -> None:
    keeper = node.federation.roster
    keeper.create("fed", actor="test")
    pid = keeper.propose([Admit(_member(1))], actor="test")  # pending: member 1 has not signed
    view = keeper.view()
    assert [p["id"] for p in view["proposals"]] == [pid] and view["warnings"] == []
    assert keeper.withdraw(pid[:12], actor="test") == pid
    assert keeper.view()["proposals"] == []
    assert keeper.ref() is not None
    current = keeper.book.current
    assert current is not None
    keeper.book.clock = lambda: current.roster.expires_at + 1
    assert keeper.ref() is None  # manifests list the pins again
    view = keeper.view()
    assert view["roster"]["frozen"] and "frozen" in view["warnings"][0]
