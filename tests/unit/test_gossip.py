"""The gossip state machine against every adversarial input the issue names; nothing invalid is stored."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from nacl.signing import SigningKey

from coop.federation import (
    DEFAULT_LIMITS,
    GENESIS,
    PAYLOAD_TYPE,
    Accepted,
    Book,
    Duplicate,
    Entry,
    Equivocation,
    GovernanceState,
    MemoryBookStore,
    Reason,
    Rejected,
    Tombstone,
    build_manifest,
    entry_bytes,
    seal_manifest,
)
from coop.federation.gossip import Want, wants
from coop.governance import MAX_SAFE_INTEGER, Embargo, EvalConsent, License, Scope, public_key, sha256_hex
from coop.governance.envelope import pae, seal
from coop.governance.signing import Signer

from factories import record_for

NOW = 1_900_000_000
STATE = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)


def seed(n: int) -> bytes:
    return bytes([n]) * 32


class Origin:
    """A signing origin that builds a valid chain, and can be made to misbehave."""

    def __init__(self, n: int) -> None:
        self.seed = seed(n)
        self.id = public_key(self.seed).hex()
        self.seq = 0
        self.prev = GENESIS
        self.complete: dict[str, Entry] = {}
        self.counter = 0

    def entry(self, scope: Scope = Scope.PUBLIC, *, tags: tuple[str, ...] = ()) -> Entry:
        self.counter += 1
        return Entry(
            uid=f"u{self.counter:05d}",
            hash=sha256_hex(f"{self.id}:{self.counter}".encode()),
            license=License.CC_BY,
            ai_use="train-ai=y",
            eval=EvalConsent.YES,
            scope=scope,
            tags=tags,
        )

    def payload(
        self,
        added: list[Entry] | None = None,
        tombstones: list[Tombstone] | None = None,
        *,
        seq: int | None = None,
        prev: str | None = None,
        issued_at: int = NOW,
        lifetime: int = 86_400,
        key: str | None = None,
        rotate_to: str | None = None,
        commit: bool = True,
        state: GovernanceState = STATE,
        federation: list[str] | None = None,
    ) -> bytes:
        added = added or []
        complete = dict(self.complete)
        for tomb in tombstones or []:
            complete.pop(tomb.uid, None)
        complete.update({e.uid: e for e in added})
        data = build_manifest(
            origin=self.id,
            key=key or public_key(self.seed).hex(),
            coop="origin",
            seq=self.seq + 1 if seq is None else seq,
            prev=self.prev if prev is None else prev,
            issued_at=issued_at,
            lifetime=lifetime,
            release=None,
            added=added,
            complete=complete,
            tombstones=tombstones or [],
            state=state,
            rotate_to=rotate_to,
            federation=federation,
        )
        if commit:
            self.seq += 1
            self.prev = sha256_hex(data)
            self.complete = complete
        return data

    def manifest(self, added: list[Entry] | None = None, **kwargs: object) -> bytes:
        return seal_manifest(self.payload(added, **kwargs), [Signer(self.seed)])  # type: ignore[arg-type]


def book_for(*origins: Origin) -> Book:
    return Book("f" * 64, {o.id: o.id for o in origins}, MemoryBookStore())


def only(decisions: list[object]) -> object:
    assert len(decisions) == 1, decisions
    return decisions[0]


def test_receive_valid_chain_is_accepted_in_order() -> None:
    origin = Origin(1)
    book = book_for(origin)
    first = origin.manifest([origin.entry()])
    second = origin.manifest([origin.entry()])
    decisions = book.receive([second, first], now=NOW)
    assert [d.__class__ for d in decisions] == [Accepted, Accepted]
    assert book.store.heads()[origin.id].seq == 2
    assert len(book.store.entries(origin.id)) == 2


def test_receive_forged_signature_is_rejected_and_not_stored() -> None:
    origin = Origin(1)
    book = book_for(origin)
    payload = origin.payload([origin.entry()])
    envelope = json.loads(seal(payload, "application/vnd.coop-flywheel.manifest+json", [Signer(seed(9))]))
    envelope["signatures"][0]["keyid"] = origin.id  # claims the trusted key, signed by another
    decision = only(book.receive([json.dumps(envelope).encode()], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.BAD_SIGNATURE
    assert book.store.heads() == {}


def test_receive_unknown_key_is_rejected() -> None:
    stranger, member = Origin(2), Origin(1)
    book = book_for(member)
    decision = only(book.receive([stranger.manifest([stranger.entry()])], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.UNKNOWN_KEY


def test_receive_payload_altered_after_signing_is_rejected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    envelope = json.loads(origin.manifest([origin.entry()]))
    payload = base64.b64decode(envelope["payload"]).replace(b"train-ai=y", b"train-ai=n")
    envelope["payload"] = base64.b64encode(payload).decode()
    decision = only(book.receive([json.dumps(envelope).encode()], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.BAD_SIGNATURE


def test_receive_key_rotation_signed_by_both_keys_moves_trust() -> None:
    origin = Origin(1)
    book = book_for(origin)
    new = seed(7)
    assert isinstance(only(book.receive([origin.manifest([origin.entry()])], now=NOW)), Accepted)
    rotation = seal_manifest(
        origin.payload(rotate_to=public_key(new).hex()), [Signer(origin.seed), Signer(new)]
    )
    assert isinstance(only(book.receive([rotation], now=NOW)), Accepted)
    assert book.store.heads()[origin.id].key == public_key(new).hex()
    after = seal_manifest(origin.payload([origin.entry()], key=public_key(new).hex()), [Signer(new)])
    assert isinstance(only(book.receive([after], now=NOW)), Accepted)
    stale = seal_manifest(origin.payload([origin.entry()], commit=False), [Signer(origin.seed)])
    decision = only(book.receive([stale], now=NOW))
    assert isinstance(decision, Rejected)  # the old key no longer speaks for the origin


def test_receive_rotation_signed_only_by_the_new_key_is_rejected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    book.receive([origin.manifest([origin.entry()])], now=NOW)
    new = seed(7)
    by_new_only = seal_manifest(
        origin.payload(key=public_key(new).hex(), rotate_to=public_key(new).hex(), commit=False),
        [Signer(new)],
    )
    decision = only(book.receive([by_new_only], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason in (Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE)
    by_old_only = seal_manifest(
        origin.payload(rotate_to=public_key(new).hex(), commit=False), [Signer(origin.seed)]
    )
    decision = only(book.receive([by_old_only], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.ROTATION_UNSIGNED
    assert book.store.heads()[origin.id].key == origin.id


def test_receive_older_seq_after_newer_never_lowers_the_high_water_mark() -> None:
    origin = Origin(1)
    book = book_for(origin)
    first = origin.manifest([origin.entry()])
    second = origin.manifest([origin.entry()])
    book.receive([first, second], now=NOW)
    decision = only(book.receive([first], now=NOW))
    assert isinstance(decision, Duplicate)
    assert book.store.heads()[origin.id].seq == 2


def test_receive_lower_seq_unknown_here_is_rollback() -> None:
    origin = Origin(1)
    store = MemoryBookStore()
    book = Book("f" * 64, {origin.id: origin.id}, store)
    book.receive([origin.manifest([origin.entry()]), origin.manifest([origin.entry()])], now=NOW)
    del store._manifests[(origin.id, 1)]  # as if pruned: an old sequence now unknown here
    replay = seal_manifest(origin.payload(seq=1, prev=GENESIS, commit=False), [Signer(origin.seed)])
    decision = only(book.receive([replay], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.ROLLBACK
    assert store.heads()[origin.id].seq == 2


def test_receive_identical_manifest_again_is_a_no_op_not_rebroadcast() -> None:
    origin = Origin(1)
    book = book_for(origin)
    envelope = origin.manifest([origin.entry()])
    book.receive([envelope], now=NOW)
    digest = book.digest()
    assert isinstance(only(book.receive([envelope], now=NOW)), Duplicate)
    assert book.digest() == digest
    assert book.serve([Want(origin=origin.id, after=0)]) == [envelope]  # stored once


def test_receive_two_valid_manifests_same_seq_is_equivocation_with_evidence() -> None:
    origin = Origin(1)
    book = book_for(origin)
    base = origin.manifest([origin.entry()])
    book.receive([base], now=NOW)
    one = seal_manifest(origin.payload([origin.entry()], commit=False), [Signer(origin.seed)])
    other = seal_manifest(
        origin.payload([origin.entry(), origin.entry()], commit=False), [Signer(origin.seed)]
    )
    assert isinstance(only(book.receive([one], now=NOW)), Accepted)
    decision = only(book.receive([other], now=NOW))
    assert isinstance(decision, Equivocation)
    assert len(decision.hashes) == 2
    head = book.store.heads()[origin.id]
    assert head.forked
    assert head.seq == 2  # no winner picked: the head is what it was
    evidence = {h for _, h in book.store.evidence()[origin.id]}
    assert evidence == set(decision.hashes)
    # Evidence is asked for first, and served with its twin.
    remote = book.digest()
    fresh = book_for(origin)
    fresh.receive([base], now=NOW)
    wanted = fresh.wants(remote)
    assert wanted[0].evidence
    served = book.serve(wanted)
    fresh_decisions = fresh.receive(served, now=NOW)
    assert any(isinstance(d, Equivocation) for d in fresh_decisions)
    assert fresh.store.heads()[origin.id].forked


def test_receive_next_seq_not_chaining_is_equivocation() -> None:
    origin = Origin(1)
    book = book_for(origin)
    book.receive([origin.manifest([origin.entry()])], now=NOW)
    off_chain = seal_manifest(
        origin.payload([origin.entry()], prev="a" * 64, commit=False), [Signer(origin.seed)]
    )
    decision = only(book.receive([off_chain], now=NOW))
    assert isinstance(decision, Equivocation)
    assert book.store.heads()[origin.id].forked
    assert book.store.heads()[origin.id].seq == 1


def test_receive_expired_manifest_presented_as_new_is_rejected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    expired = origin.manifest([origin.entry()], issued_at=NOW - 10_000, lifetime=100)
    decision = only(book.receive([expired], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.EXPIRED


def test_receive_expired_link_followed_by_a_fresh_one_is_accepted() -> None:
    origin = Origin(1)
    book = book_for(origin)
    old = origin.manifest([origin.entry()], issued_at=NOW - 10_000, lifetime=100)
    fresh = origin.manifest([origin.entry()])
    assert [d.__class__ for d in book.receive([old, fresh], now=NOW)] == [Accepted, Accepted]


def test_receive_sequence_at_2_to_53_is_rejected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    manifest = msgspec.json.decode(origin.payload(commit=False))
    manifest["seq"] = 2**53
    payload = msgspec.json.encode(manifest, order="sorted")
    decision = only(book.receive([seal_manifest(payload, [Signer(origin.seed)])], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.SEQ_OUT_OF_RANGE
    assert MAX_SAFE_INTEGER == 2**53 - 1


def test_receive_roots_not_matching_the_folded_set_are_rejected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    manifest = msgspec.json.decode(origin.payload([origin.entry()], commit=False))
    manifest["roots"][0][1] = 5  # claims five entries where the chain gives one
    payload = msgspec.json.encode(manifest, order="sorted")
    decision = only(book.receive([seal_manifest(payload, [Signer(origin.seed)])], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.BAD_MERKLE_ROOT


def test_receive_node_scope_entry_is_malformed() -> None:
    origin = Origin(1)
    book = book_for(origin)
    manifest = msgspec.json.decode(origin.payload([origin.entry()], commit=False))
    manifest["buckets"][0]["entries"][0][5] = "node"
    payload = msgspec.json.encode(manifest, order="sorted")
    decision = only(book.receive([seal_manifest(payload, [Signer(origin.seed)])], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.MALFORMED


def test_receive_oversized_envelope_is_rejected_before_parsing() -> None:
    origin = Origin(1)
    book = Book("f" * 64, {origin.id: origin.id}, MemoryBookStore(), limits=_tiny_limits())
    decision = only(book.receive([origin.manifest([origin.entry() for _ in range(50)])], now=NOW))
    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.TOO_LARGE


def _tiny_limits() -> object:
    from coop.federation import Limits

    return Limits(max_bytes=2048)


def test_receive_records_with_wrong_bytes_refused_then_fetched_elsewhere() -> None:
    origin = Origin(1)
    book = book_for(origin)
    entry, data = record_for(origin.entry())
    book.receive([origin.manifest([entry])], now=NOW)
    wanted = book.record_wants()
    assert [e.hash for _, e in wanted] == [entry.hash]
    refused = book.receive_records(wanted, {entry.hash: data + b" "})
    assert refused == [entry.hash]
    assert book.record_wants() == wanted  # still wanted: ask another peer
    assert book.receive_records(wanted, {entry.hash: data}) == []
    assert book.record_wants() == []


def test_tombstone_deletes_mirrored_copy_and_it_is_never_resurrected() -> None:
    origin = Origin(1)
    book = book_for(origin)
    entry, data = record_for(origin.entry())
    book.receive([origin.manifest([entry])], now=NOW)
    book.receive_records(book.record_wants(), {entry.hash: data})
    assert book.store.records([entry.hash])
    book.receive([origin.manifest(tombstones=[Tombstone(uid=entry.uid, at=NOW)])], now=NOW)
    assert book.store.records([entry.hash]) == {}
    book.store.put_records([(origin.id, entry, data)])  # a late answer from a peer
    assert book.store.records([entry.hash]) == {}
    assert book.record_wants() == []


def test_record_wants_skip_forked_origins() -> None:
    origin = Origin(1)
    book = book_for(origin)
    book.receive([origin.manifest([origin.entry()])], now=NOW)
    one = seal_manifest(origin.payload([origin.entry()], commit=False), [Signer(origin.seed)])
    other = seal_manifest(
        origin.payload([origin.entry(), origin.entry()], commit=False), [Signer(origin.seed)]
    )
    book.receive([one, other], now=NOW)
    assert book.store.heads()[origin.id].forked
    assert book.record_wants() == []


def test_wants_asks_only_for_pinned_origins_and_evidence_first() -> None:
    a, b = Origin(1), Origin(2)
    from coop.federation import DigestItem

    remote = {
        a.id: DigestItem(seq=3, hash="1" * 64),
        b.id: DigestItem(seq=1, hash="2" * 64, evidence=("3" * 64,)),
        "e" * 64: DigestItem(seq=9, hash="4" * 64),
    }
    asked = wants({}, remote, {a.id, b.id})
    assert [w.origin for w in asked] == [b.id, a.id]
    assert asked[0].evidence == ("3" * 64,)


def test_pae_matches_the_dsse_specification() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_signature_verifies_with_pynacl_directly() -> None:
    origin = Origin(1)
    envelope = json.loads(origin.manifest())
    payload = base64.b64decode(envelope["payload"])
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    key = SigningKey(origin.seed).verify_key
    assert key.verify(pae(envelope["payloadType"], payload), signature)


@pytest.mark.parametrize("scope", [Scope.NODE])
def test_build_manifest_refuses_node_scope(scope: Scope) -> None:
    origin = Origin(1)
    with pytest.raises(ValueError, match="node-scope"):
        origin.payload([origin.entry(scope)])


# -- what to pull follows the origin's latest manifest (issue 10, defects 6 and 8) --------------

SELF = "f" * 64  # the node id of the book in these tests


@pytest.mark.parametrize(
    ("state", "federation", "expected"),
    [
        pytest.param(STATE, [SELF], {"plain", "secret", "federation"}, id="in-the-federation"),
        pytest.param(STATE, ["e" * 64], {"plain", "secret"}, id="outside-the-federation"),
        pytest.param(STATE, None, {"plain", "secret"}, id="federation-not-stated"),
        pytest.param(msgspec.structs.replace(STATE, quality_freeze=True), [SELF], set(), id="frozen"),
        pytest.param(msgspec.structs.replace(STATE, embargo=Embargo(on=True)), [SELF], set(), id="embargo"),
        pytest.param(
            msgspec.structs.replace(STATE, embargo=Embargo(on=True, tags=("secret",))),
            [SELF],
            {"plain", "federation"},
            id="embargo-by-tag",
        ),
    ],
)
def test_record_wants_follow_the_origins_latest_manifest(
    state: GovernanceState, federation: list[str] | None, expected: set[str]
) -> None:
    origin = Origin(1)
    book = book_for(origin)
    names = {}
    entries = [origin.entry(), origin.entry(tags=("secret",)), origin.entry(Scope.FEDERATION)]
    for name, entry in zip(("plain", "secret", "federation"), entries, strict=True):
        names[entry.uid] = name
    book.receive([origin.manifest(entries, federation=[SELF])], now=NOW)
    assert {names[e.uid] for _, e in book.record_wants()} == {"plain", "secret", "federation"}
    # A later manifest changes the state: what was listed before follows it.
    book.receive([origin.manifest(state=state, federation=federation)], now=NOW)
    assert {names[e.uid] for _, e in book.record_wants()} == expected


def test_entry_without_tags_or_language_hashes_as_in_older_manifests() -> None:
    entry = Origin(1).entry()
    old = msgspec.json.encode([entry.uid, entry.hash, "CC-BY-4.0", "train-ai=y", "y", "public"])
    assert entry_bytes(entry) == old
    assert msgspec.json.decode(old, type=Entry) == entry
    assert entry_bytes(msgspec.structs.replace(entry, language="en")) != old


def test_manifest_from_before_the_federation_field_still_verifies_and_chains() -> None:
    origin = Origin(1)
    book = book_for(origin)
    entry = origin.entry()
    # The payload exactly as older code wrote it: no federation key, six-field entries.
    old = msgspec.json.decode(origin.payload([entry], commit=False))
    del old["federation"]
    for bucket in old["buckets"]:
        bucket["entries"] = [item[:6] for item in bucket["entries"]]
    old_bytes = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    assert b"federation" not in old_bytes and b'"public"]' in old_bytes
    decisions = book.receive([seal(old_bytes, PAYLOAD_TYPE, [Signer(origin.seed)])], now=NOW)
    assert isinstance(only(decisions), Accepted)
    assert book.store.heads()[origin.id].federation is None
    origin.seq, origin.prev, origin.complete = 1, sha256_hex(old_bytes), {entry.uid: entry}
    tagged = origin.entry(tags=("secret",))
    decisions = book.receive([origin.manifest([tagged], federation=[SELF])], now=NOW)
    assert isinstance(only(decisions), Accepted)
    assert book.store.heads()[origin.id].federation == (SELF,)
    assert book.store.entries(origin.id)[tagged.uid].tags == ("secret",)


def test_manifest_with_a_federation_list_beyond_any_co_ops_pins_is_refused() -> None:
    """A forged list of thousands of ids would tax every signed request that reads the heads."""
    origin = Origin(1)
    book = book_for(origin)
    huge = sorted(f"{n:064x}" for n in range(DEFAULT_LIMITS.max_federation + 1))
    decision = only(book.receive([origin.manifest([origin.entry()], federation=huge)], now=NOW))
    assert isinstance(decision, Rejected) and decision.reason is Reason.MALFORMED
    assert origin.id not in book.store.heads()


def test_serve_relays_an_origins_manifests_only_to_co_ops_of_its_federation() -> None:
    """A signed manifest lists federation-scope records and cannot be trimmed: not relayed beyond."""
    origin = Origin(1)
    book = book_for(origin)
    member, outsider = f"{7:064x}", f"{8:064x}"
    envelope = origin.manifest([origin.entry(Scope.FEDERATION)], federation=[SELF, member])
    assert isinstance(only(book.receive([envelope], now=NOW)), Accepted)
    want = [Want(origin=origin.id, after=0)]
    assert book.serve(want, requester=member) == [envelope]
    assert book.serve(want, requester=origin.id) == [envelope]
    assert book.serve(want, requester=outsider) == []
    old_style = Origin(2)
    book2 = book_for(old_style)
    book2.receive([old_style.manifest([old_style.entry()])], now=NOW)  # no federation list
    assert book2.serve([Want(origin=old_style.id, after=0)], requester=member) == []
