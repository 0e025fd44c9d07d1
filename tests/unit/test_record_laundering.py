"""A hostile peer cannot launder another co-op's record: relabel its scope, licence or uid,
list its hash as its own, or bring a withdrawn one back under another origin's entry.

O (an honest origin) shares a federation-scope CC-BY-SA record R; V mirrors; P (hostile,
pinned by V) lists R's hash under its own signed manifest and hands over R's bytes.  Each
attempt is refused and recorded, never mirrored, never listed publicly, never re-published.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from coop.federation import Effects, Entry, GovernanceState, Tombstone, build_manifest, seal_manifest
from coop.federation.gossip import Book, MemoryBookStore, record_disagreement
from coop.governance import Audience, Embargo, EvalConsent, License, Scope, public_key, sha256_hex
from coop.governance.signing import Signer
from coop.node.contributions.rights import withdraw_contribution
from coop.node.peering.refusals import recent_refusals
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process, record_for

SECRET = "quokka-ledger-7731"
STATE = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)


class Hostile:
    """P: a pinned co-op that signs whatever manifests it likes."""

    def __init__(self) -> None:
        self.seed = bytes([7]) * 32
        self.id = public_key(self.seed).hex()
        self.seq = 0
        self.prev = "0" * 64
        self.complete: dict[str, Entry] = {}

    def manifest(self, added: list[Entry], *, now: int, federation: list[str]) -> bytes:
        self.complete.update({e.uid: e for e in added})
        self.seq += 1
        payload = build_manifest(
            origin=self.id,
            key=self.id,
            coop="Hostile",
            seq=self.seq,
            prev=self.prev,
            issued_at=now,
            lifetime=86_400,
            release=None,
            added=added,
            complete=self.complete,
            tombstones=[],
            state=STATE,
            federation=federation,
        )
        self.prev = sha256_hex(payload)
        return seal_manifest(payload, [Signer(self.seed)])


@dataclass
class World:
    o: Node
    v: Node
    p: Hostile
    uid: str  # R's uid at O
    entry: Entry  # O's listed entry for R
    data: bytes  # R's bytes, as O serves them to V (a member of its federation)

    def gossip_from_o(self) -> None:
        chain = self.o.federation.store.chain_after(self.o.identity.node_id, 0, 1000)
        self.v.federation.book.receive(chain, now=self.o.now())

    def hostile_lists(self, entry: Entry) -> None:
        envelope = self.p.manifest([entry], now=self.v.now(), federation=[self.v.identity.node_id])
        decisions = self.v.federation.book.receive([envelope], now=self.v.now())
        assert type(decisions[0]).__name__ == "Accepted", decisions

    def mirrored_rows(self) -> list[tuple[str, str, str, str]]:
        return self.v.store.read(
            lambda c: c.execute("SELECT origin, uid, scope, license FROM mirror_records").fetchall()
        )

    def assert_nowhere_under_p(self) -> None:
        """Not mirrored under P, not listed to anyone, not in V's federated release."""
        assert [r for r in self.mirrored_rows() if r[0] == self.p.id] == []
        for audience in (Audience.PUBLIC, Audience.FEDERATED):
            assert self.v.federation.mirrored(self.p.id, audience=audience) == []
        summary = self.v.cut_federated_release()
        folder = self.v.data.releases_path / "federated" / summary.label
        everything = b"".join(f.read_bytes() for f in folder.rglob("*") if f.is_file())
        assert SECRET.encode() not in everything


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    o, v = make_node(tmp_path, "Origin"), make_node(tmp_path, "Victim")
    p = Hostile()
    try:
        for node, other in ((o, v.identity.node_id), (v, o.identity.node_id), (v, p.id)):
            node.federation.add_peer(f"http://127.0.0.1:9/{other[:8]}", other, name=None, actor="test")
        member, _ = make_member(o)
        uid = contribute(
            o, member, scope="federation", license="CC-BY-SA-4.0", text=f"User: {SECRET}\nAssistant: ok"
        )
        process(o)
        o.cut_release()
        o.federation.issue()
        (entry,) = [e for e in o.federation.store.entries(o.identity.node_id).values() if e.uid == uid]
        got, _ = o.federation.fetch([entry.hash], requester=v.identity.node_id)
        yield World(o=o, v=v, p=p, uid=uid, entry=entry, data=got[entry.hash])
    finally:
        o.close()
        v.close()


def _refuse(world: World, listed: Entry) -> list[str]:
    """P lists ``listed`` and serves R's bytes for it; what V's book refused."""
    world.hostile_lists(listed)
    return world.v.federation.book.receive_records([(world.p.id, listed)], {listed.hash: world.data})


# -- the record's own terms --------------------------------------------------------------------


@pytest.mark.parametrize(
    "relabel",
    [
        pytest.param({"scope": Scope.PUBLIC}, id="scope"),
        pytest.param({"license": License.CC0}, id="licence"),
        pytest.param({"uid": "laundered-0001"}, id="uid"),
        pytest.param({"uid": "laundered-0001", "license": License.CC0, "scope": Scope.PUBLIC}, id="all"),
        pytest.param({"ai_use": "train-ai=y"}, id="ai_use"),
        pytest.param({"tags": ("harmless",)}, id="tags"),
    ],
)
def test_laundering_relabelled_record_is_refused_recorded_and_published_nowhere(
    world: World, relabel: dict[str, object]
) -> None:
    # V has not seen O's listing yet (the reviewer's race): only the bytes can tell.
    listed = msgspec.structs.replace(world.entry, **relabel)
    assert _refuse(world, listed) == [world.entry.hash]
    world.assert_nowhere_under_p()
    # And it is not asked for again every round.
    assert (world.p.id, listed) not in world.v.federation.book.record_wants()


def test_laundering_refusal_is_recorded_against_the_peer_that_served_it(world: World) -> None:
    listed = msgspec.structs.replace(
        world.entry, uid="laundered-0001", license=License.CC0, scope=Scope.PUBLIC
    )
    world.hostile_lists(listed)
    refused = world.v.federation.book.accept_records([(world.p.id, listed)], {listed.hash: world.data})
    assert [(r.reason, r.uid) for r in refused] == [("record_mismatch", "laundered-0001")]
    assert "uid, license, scope" in refused[0].detail
    world.v.federation.rounds.refused_records(world.p.id, refused)
    (kept,) = world.v.store.read(lambda c: recent_refusals(c, world.p.id))
    assert kept.step == "records" and kept.reason == "record_mismatch"


def test_laundering_record_disagreement_accepts_exact_terms_only() -> None:
    entry, data = record_for(
        Entry("u1", "", License.CC_BY_SA, "train-ai=n", EvalConsent.YES, Scope.FEDERATION, ("a",), "en")
    )
    assert record_disagreement(entry, data) is None
    assert record_disagreement(entry, b"not a record") == "the bytes do not match the listed hash"
    relabelled = msgspec.structs.replace(entry, language=None)
    assert record_disagreement(relabelled, data) == "the record's own language differ from the listed entry"


# -- one origin per hash -------------------------------------------------------------------------


def test_laundering_another_origins_hash_is_neither_pulled_nor_kept(world: World) -> None:
    world.gossip_from_o()  # V knows O lists R
    exact = msgspec.structs.replace(world.entry)  # R's own terms, claimed by P as its own
    world.hostile_lists(exact)
    wanted = world.v.federation.book.record_wants()
    assert (world.p.id, exact) not in wanted  # nobody is asked for O's bytes on P's behalf
    assert world.v.federation.book.receive_records([(world.p.id, exact)], {exact.hash: world.data}) == [
        exact.hash
    ]
    world.assert_nowhere_under_p()


def test_laundering_held_copy_stays_under_its_origin_when_another_claims_it(world: World) -> None:
    world.gossip_from_o()
    book = world.v.federation.book
    assert book.receive_records(book.record_wants(), {world.entry.hash: world.data}) == []
    world.hostile_lists(msgspec.structs.replace(world.entry))
    assert book.record_wants() == []
    assert book.receive_records([(world.p.id, world.entry)], {world.entry.hash: world.data}) == [
        world.entry.hash
    ]
    assert world.mirrored_rows() == [(world.o.identity.node_id, world.uid, "federation", "CC-BY-SA-4.0")]


# -- withdrawn, then relisted --------------------------------------------------------------------


def test_laundering_withdrawn_then_relisted_elsewhere_is_kept_out(world: World) -> None:
    world.gossip_from_o()
    book = world.v.federation.book
    book.receive_records(book.record_wants(), {world.entry.hash: world.data})
    assert len(world.mirrored_rows()) == 1
    world.o.store.write(lambda c: withdraw_contribution(c, uid=world.uid, member=None, now=world.o.now()))
    world.o.federation.issue()
    world.gossip_from_o()
    assert world.mirrored_rows() == []  # V deleted its copy, as it should
    # P relists R exactly (its own terms, so only the tombstone can tell), then as the reviewer did.
    for listed in (
        msgspec.structs.replace(world.entry),
        msgspec.structs.replace(world.entry, uid="laundered-0001", license=License.CC0, scope=Scope.PUBLIC),
    ):
        assert _refuse(world, listed) == [world.entry.hash]
        world.v.federation.store.put_records([(world.p.id, listed, world.data)])  # a late answer
        world.assert_nowhere_under_p()


def test_laundering_tombstone_deletes_the_same_bytes_held_under_another_origin() -> None:
    o_seed, p_seed = bytes([1]) * 32, bytes([2]) * 32
    o, p = public_key(o_seed).hex(), public_key(p_seed).hex()
    store = MemoryBookStore()
    entry, data = record_for(Entry("u1", "", License.CC0, "train-ai=y", EvalConsent.YES, Scope.PUBLIC))
    store.put_records([(p, entry, data)])  # P got there first
    store.apply(_effects(o, [entry]))
    store.apply(_effects(o, [], tombstones=[Tombstone(uid="u1", at=1)]))
    assert store.records([entry.hash]) == {}
    store.put_records([(p, entry, data)])
    assert store.records([entry.hash]) == {}
    book = Book("f" * 64, {o: o, p: p}, store)
    assert book.receive_records([(p, entry)], {entry.hash: data}) == [entry.hash]


def test_laundering_sqlite_tombstone_deletes_the_same_bytes_held_under_another_origin(world: World) -> None:
    store = world.v.federation.store
    o = world.o.identity.node_id
    store.put_records([(world.p.id, world.entry, world.data)])  # P got there first (old code, or a race)
    store.apply(_effects(o, [world.entry]))
    store.apply(_effects(o, [], tombstones=[Tombstone(uid=world.uid, at=1)]))
    assert world.mirrored_rows() == []
    store.put_records([(world.p.id, world.entry, world.data)])
    assert world.mirrored_rows() == []


def _effects(origin: str, added: list[Entry], tombstones: list[Tombstone] | None = None) -> Effects:
    return Effects(origin=origin, store=(), added=tuple(added), tombstones=tuple(tombstones or ()))


# -- rows kept before the fix: terms come from the bytes -----------------------------------------


def test_laundering_old_relabelled_row_is_not_listed_served_or_republished(world: World) -> None:
    p = world.p.id
    world.hostile_lists(msgspec.structs.replace(world.entry, uid="laundered-0001", scope=Scope.PUBLIC))

    def insert(conn: sqlite3.Connection) -> None:  # as the old receipt kept it
        conn.execute(
            "INSERT INTO mirror_records (hash, origin, uid, license, ai_use, eval, scope, record, received_at)"
            " VALUES (?, ?, 'laundered-0001', 'CC0-1.0', ?, ?, 'public', ?, 0)",
            (world.entry.hash, p, world.entry.ai_use, world.entry.eval.value, world.data),
        )

    world.v.store.write(insert)
    assert world.v.federation.mirrored(p, audience=Audience.PUBLIC) == []
    assert world.v.federation.mirrored(p, audience=Audience.ADMIN) != []  # its admins see it
    got, _ = world.v.federation.fetch([world.entry.hash], requester=world.o.identity.node_id)
    assert got == {}
    summary = world.v.cut_federated_release()
    folder = world.v.data.releases_path / "federated" / summary.label
    assert SECRET.encode() not in b"".join(f.read_bytes() for f in folder.rglob("*") if f.is_file())


# -- a decoy claim censors nothing -----------------------------------------------------------------


def test_laundering_a_decoy_listing_and_withdrawal_censor_nothing(world: World) -> None:
    """P lists O's hash under a uid of its own, then withdraws it: the bytes say O's uid, so
    P's claim contests nothing; V still pulls O's record, keeps it and lists it."""
    decoy = msgspec.structs.replace(world.entry, uid="p-decoy-1")
    world.hostile_lists(decoy)
    world.gossip_from_o()
    book = world.v.federation.book
    assert (world.o.identity.node_id, world.entry) in book.record_wants()
    # P's tombstone of its decoy (a second manifest) withdraws nothing of O's.
    store = world.v.federation.store
    store.apply(_effects(world.p.id, [], tombstones=[Tombstone(uid="p-decoy-1", at=1)]))
    assert book.receive_records(book.record_wants(), {world.entry.hash: world.data}) == []
    o = world.o.identity.node_id
    assert world.mirrored_rows() == [(o, world.uid, "federation", "CC-BY-SA-4.0")]
    # ...and once held, another decoy withdrawal still deletes nothing.
    store.apply(_effects(world.p.id, [decoy]))
    store.apply(_effects(world.p.id, [], tombstones=[Tombstone(uid="p-decoy-1", at=2)]))
    assert world.mirrored_rows() == [(o, world.uid, "federation", "CC-BY-SA-4.0")]


def test_laundering_memory_store_decoy_withdrawal_keeps_the_honest_copy() -> None:
    o, p = public_key(bytes([1]) * 32).hex(), public_key(bytes([2]) * 32).hex()
    store = MemoryBookStore()
    entry, data = record_for(Entry("u1", "", License.CC0, "train-ai=y", EvalConsent.YES, Scope.PUBLIC))
    store.apply(_effects(o, [entry]))
    store.put_records([(o, entry, data)])
    decoy = msgspec.structs.replace(entry, uid="p-decoy")
    store.apply(_effects(p, [decoy]))
    store.apply(_effects(p, [], tombstones=[Tombstone(uid="p-decoy", at=1)]))
    assert store.records([entry.hash]) == {entry.hash: data}
