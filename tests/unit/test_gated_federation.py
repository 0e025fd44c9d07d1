"""Gated buckets across the federation: manifests declare them (signed; absent when unset, so old
manifests keep their bytes), peers honour them: no mirror unless the origin allows it, and never a
re-publication in a peer's federated release."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
import pytest

from coop.federation import check_manifest
from coop.federation.errors import ManifestError, Reason
from coop.federation.manifest import PAYLOAD_TYPE, Entry, GovernanceState, build_manifest, seal_manifest
from coop.governance import Audience, Embargo, EvalConsent, License, Scope, canonical_bytes
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
SA = "CC-BY-SA-4.0"
SIGNER = Signer(b"\x07" * 32)
ORIGIN = SIGNER.public_key.hex()
TRUSTED = {ORIGIN: ORIGIN}
STATE = GovernanceState(
    settings_digest="a" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)


def _payload(**extra: object) -> bytes:
    inputs: dict[str, object] = {"release": None, "added": [], "complete": {}, "tombstones": [], **extra}
    return build_manifest(
        origin=ORIGIN,
        key=ORIGIN,
        coop="Origin",
        seq=1,
        prev="0" * 64,
        issued_at=1_700_000_000,
        lifetime=86_400,
        state=STATE,
        **inputs,  # type: ignore[arg-type]
    )


def _resealed(payload: bytes, **changes: object) -> bytes:
    """``payload`` with top-level fields replaced (None: removed), canonical and signed again."""
    fields = json.loads(payload)
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return seal_manifest(canonical_bytes(fields), [SIGNER])


# -- the manifest fields ---------------------------------------------------------------------------


# A manifest payload as the code before the fields built it (commit a972042), for these inputs.
_O, _Z, _A, _B = ORIGIN.encode(), b"0" * 64, b"a" * 64, b"b" * 64
OLD_PAYLOAD: Final = (
    b'{"buckets":[{"entries":[["u1","' + _B + b'","CC-BY-SA-4.0","train-ai=n","y","public",[],null]],'
    b'"license":"CC-BY-SA-4.0","name":"cc-by-sa"}],"coop":"Origin","expires_at":1700086400,'
    b'"federation":["' + _O + b'"],"issued_at":1700000000,"key":"' + _O + b'",'
    b'"origin":"' + _O + b'","prev":"' + _Z + b'","release":"v1",'
    b'"roots":[["cc-by-sa",1,"03d0b8315f754fe7f4b445417100f5945d8d0d8cec152542e46988aa7c9508ec"]],'
    b'"rotate_to":null,"seq":1,"state":{"audit_head":"' + _Z + b'","audit_seq":0,'
    b'"embargo":{"languages":[],"on":false,"tags":[]},"quality_freeze":false,"settings_digest":"'
    + _A
    + b'"},"tombstones":[],"type":"coop-flywheel/manifest/1"}'
)


def _old_inputs() -> dict[str, object]:
    entry = Entry(
        uid="u1",
        hash="b" * 64,
        license=License.CC_BY_SA,
        ai_use="train-ai=n",
        eval=EvalConsent.YES,
        scope=Scope.PUBLIC,
    )
    return {"release": "v1", "added": [entry], "complete": {"u1": entry}, "federation": [ORIGIN]}


def test_gated_manifest_without_gates_has_the_bytes_of_a_manifest_from_before_the_fields() -> None:
    assert _payload(**_old_inputs()) == OLD_PAYLOAD
    assert _payload(**_old_inputs(), gated=(), mirror_gated=False) == OLD_PAYLOAD
    assert _payload(**_old_inputs(), mirror_gated=True) == OLD_PAYLOAD  # nothing gated: nothing to mirror
    verified = check_manifest(seal_manifest(OLD_PAYLOAD, [SIGNER]), trusted=TRUSTED)
    assert verified.manifest.gated is msgspec.UNSET and verified.manifest.mirror_gated is msgspec.UNSET
    # Decoded and encoded again, the old payload is the one signed, byte for byte.
    assert canonical_bytes(verified.manifest) == OLD_PAYLOAD
    assert verified.hash == hashlib.sha256(OLD_PAYLOAD).hexdigest()


def test_gated_manifest_lists_gated_licences_sorted_and_mirror_gated_only_when_true() -> None:
    payload = _payload(gated=(License.CC_BY_SA, License.CC0, License.CC_BY_SA), mirror_gated=True)
    fields = json.loads(payload)
    assert fields["gated"] == ["CC-BY-SA-4.0", "CC0-1.0"] and fields["mirror_gated"] is True
    verified = check_manifest(seal_manifest(payload, [SIGNER]), trusted=TRUSTED)
    assert (
        verified.manifest.gated == (License.CC_BY_SA, License.CC0) and verified.manifest.mirror_gated is True
    )
    assert "mirror_gated" not in json.loads(_payload(gated=(License.CC0,)))


@pytest.mark.parametrize(
    "changes",
    [
        {"gated": []},
        {"gated": ["CC0-1.0", "CC-BY-SA-4.0"]},
        {"gated": ["CC0-1.0", "CC0-1.0"]},
        {"gated": ["CC-BY-NC-4.0"]},
        {"mirror_gated": False},
        {"gated": None, "mirror_gated": True},
    ],
    ids=["empty", "unsorted", "repeated", "unknown-licence", "explicit-false", "mirror-without-gate"],
)
def test_gated_manifest_refuses_a_second_way_to_write_the_fields(changes: dict[str, object]) -> None:
    with pytest.raises(ManifestError) as caught:
        check_manifest(_resealed(_payload(gated=(License.CC0,)), **changes), trusted=TRUSTED)
    assert caught.value.reason is Reason.MALFORMED


def test_gated_manifest_fields_are_signed() -> None:
    envelope = json.loads(seal_manifest(_payload(gated=(License.CC_BY_SA,)), [SIGNER]))
    fields = json.loads(base64.b64decode(envelope["payload"]))
    del fields["gated"]  # a relay drops the gate, keeping the signature
    envelope["payload"] = base64.b64encode(canonical_bytes(fields)).decode()
    with pytest.raises(ManifestError) as caught:
        check_manifest(json.dumps(envelope).encode(), trusted=TRUSTED)
    assert caught.value.reason is Reason.BAD_SIGNATURE


# -- two co-ops ------------------------------------------------------------------------------------


def _pin(node: Node, other: Node) -> None:
    other_id = other.identity.node_id
    node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")


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
    chain = origin.federation.store.chain_after(origin.identity.node_id, 0, 1000)
    peer.federation.book.receive(chain, now=origin.now())


def _held(peer: Node) -> set[str]:
    return {r[0] for r in peer.store.read(lambda c: c.execute("SELECT uid FROM mirror_records").fetchall())}


def _pull(server: Node, peer: Node) -> set[str]:
    wanted = peer.federation.book.record_wants()
    got, _ = server.federation.fetch([e.hash for _, e in wanted], requester=peer.identity.node_id)
    peer.federation.book.receive_records(wanted, got)
    return _held(peer)


def _federated_uids(node: Node) -> set[str]:
    summary = node.cut_federated_release()
    folder = node.data.releases_path / "federated" / summary.name
    return {
        json.loads(line)["uid"]
        for path in folder.glob("*/data.jsonl")
        for line in path.read_text().splitlines()
    }


def _hash(node: Node, uid: str) -> str:
    return str(
        node.store.read(
            lambda c: c.execute("SELECT record_sha256 FROM contributions WHERE uid = ?", (uid,)).fetchone()[0]
        )
    )


def _records(a: Node) -> tuple[str, str, str]:
    """A's records, released: one open (CC-BY), one share-alike, one share-alike of federation scope."""
    member, _ = make_member(a)
    open_ = contribute(a, member, license="CC-BY-4.0", scope="public")
    sa = contribute(a, member, license=SA, scope="public")
    sa_fed = contribute(a, member, license=SA, scope="federation")
    process(a)
    a.cut_release()
    return open_, sa, sa_fed


def _own_manifest(a: Node) -> dict[str, object]:
    head = a.federation.store.heads()[a.identity.node_id]
    (envelope,) = a.federation.store.envelopes(a.identity.node_id, [head.hash])
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 26)
    fields: dict[str, object] = json.loads(payload)
    return fields


def test_gated_federation_peer_does_not_receive_gated_records_when_mirroring_is_refused(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    a.change_settings({"access": {"gated": [SA]}}, actor=ADMIN)
    open_, sa, sa_fed = _records(a)
    a.federation.issue()
    declared = _own_manifest(a)
    assert declared["gated"] == [SA] and "mirror_gated" not in declared
    _receive(a, b)
    head = b.federation.store.heads()[a.identity.node_id]
    assert head.gated == (SA,) and head.mirror_gated is False
    assert _pull(a, b) == {open_}  # the gated ones are not even listed to peers
    found, refused = a.federation.fetch([_hash(a, sa), _hash(a, sa_fed)], requester=b.identity.node_id)
    assert found == {} and len(refused) == 2
    assert _federated_uids(b) == {open_}


def test_gated_federation_a_gate_set_after_listing_stops_the_peers_pulls(pair: tuple[Node, Node]) -> None:
    a, b = pair
    open_, sa, sa_fed = _records(a)
    a.federation.issue()
    _receive(a, b)  # listed before the gate, not pulled yet
    assert {e.uid for _, e in b.federation.book.record_wants()} == {open_, sa, sa_fed}
    a.change_settings({"access": {"gated": [SA]}}, actor=ADMIN)
    assert a.federation.issue() is not None  # the gate is news: a manifest says so
    _receive(a, b)
    assert {e.uid for _, e in b.federation.book.record_wants()} == {open_}
    assert _pull(a, b) == {open_}


def test_gated_federation_peer_mirrors_when_allowed_but_never_republishes(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.change_settings({"access": {"gated": [SA], "mirror_gated": True}}, actor=ADMIN)
    open_, sa, sa_fed = _records(a)
    a.federation.issue()
    declared = _own_manifest(a)
    assert declared["gated"] == [SA] and declared["mirror_gated"] is True
    _receive(a, b)
    assert _pull(a, b) == {open_, sa, sa_fed}  # mirrored within the federation
    assert _federated_uids(b) == {open_}  # but no public exit of B carries them
    public = {r["uid"] for r in b.federation.mirrored(a.identity.node_id, audience=Audience.FEDERATED)}
    assert public == {open_}


def test_gated_federation_heads_keep_the_gate_across_a_reopen_and_reread_it_when_unknown(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    a.change_settings({"access": {"gated": [SA], "mirror_gated": True}}, actor=ADMIN)
    a.federation.issue()
    _receive(a, b)
    a_id = a.identity.node_id
    # A head kept by code from before migration 23 (it could not read the fields): NULL.
    b.store.write(lambda c: c.execute("UPDATE fed_origins SET gated = NULL, mirror_gated = 0"))
    again = Node(b.data.root)
    try:
        head = again.federation.store.heads()[a_id]
        assert head.gated == (SA,) and head.mirror_gated is True
    finally:
        again.close()
