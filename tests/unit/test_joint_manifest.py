"""Joint demands in the origin's own manifest: a co-op bound by a joint action declares what it
demands (freeze, embargo selectors, evaluation-only start), signed, absent when nothing binds (old
manifests keep their bytes).  A peer that cannot verify the action itself (it does not know the
proposer) still holds the bound co-op's records in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
import pytest

from coop.federation import check_manifest
from coop.federation.errors import ManifestError, Reason
from coop.federation.manifest import (
    PAYLOAD_TYPE,
    Entry,
    GovernanceState,
    ManifestJoint,
    build_manifest,
    seal_manifest,
)
from coop.governance import (
    Audience,
    Embargo,
    EvalConsent,
    JointRules,
    JointSelector,
    License,
    Scope,
    canonical_bytes,
)
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.policy import joint_union, origin_states
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
DAY = 86_400
SIGNER = Signer(b"\x07" * 32)
ORIGIN = SIGNER.public_key.hex()
TRUSTED = {ORIGIN: ORIGIN}
STATE = GovernanceState(
    settings_digest="a" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)
ACTION = "c" * 64
JOINT: Final = ManifestJoint(
    freeze=False, embargoes=(JointSelector(tags=("health",)),), eval_only_since=None, actions=(ACTION,)
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
    fields = json.loads(payload)
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return seal_manifest(canonical_bytes(fields), [SIGNER])


# A manifest payload as the code before the field built it (commit a972042), for these inputs.
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


def test_joint_manifest_without_demands_has_the_bytes_of_a_manifest_from_before_the_field() -> None:
    assert _payload(**_old_inputs()) == OLD_PAYLOAD
    assert _payload(**_old_inputs(), joint=None) == OLD_PAYLOAD
    assert _payload(**_old_inputs(), joint=ManifestJoint()) == OLD_PAYLOAD
    assert _payload(**_old_inputs(), joint=ManifestJoint(actions=(ACTION,))) == OLD_PAYLOAD  # no demand
    verified = check_manifest(seal_manifest(OLD_PAYLOAD, [SIGNER]), trusted=TRUSTED)
    assert verified.manifest.joint is msgspec.UNSET
    assert canonical_bytes(verified.manifest) == OLD_PAYLOAD
    assert verified.hash == hashlib.sha256(OLD_PAYLOAD).hexdigest()


def test_joint_manifest_declares_the_demands_signed_and_sorted() -> None:
    joint = msgspec.structs.replace(JOINT, freeze=True, eval_only_since=5, actions=("d" * 64, ACTION))
    payload = _payload(joint=joint)
    fields = json.loads(payload)
    assert fields["joint"] == {
        "actions": [ACTION, "d" * 64],
        "embargoes": [{"languages": [], "licenses": [], "tags": ["health"]}],
        "eval_only_since": 5,
        "freeze": True,
    }
    verified = check_manifest(seal_manifest(payload, [SIGNER]), trusted=TRUSTED)
    assert verified.manifest.joint == msgspec.structs.replace(joint, actions=(ACTION, "d" * 64))


@pytest.mark.parametrize(
    "joint",
    [
        {"actions": [ACTION], "embargoes": [], "eval_only_since": None, "freeze": False},
        {"actions": [], "embargoes": [], "eval_only_since": None, "freeze": True},
        {"actions": ["d" * 64, ACTION], "embargoes": [], "eval_only_since": None, "freeze": True},
        {"actions": [ACTION, ACTION], "embargoes": [], "eval_only_since": None, "freeze": True},
        {"actions": ["not-hex"], "embargoes": [], "eval_only_since": None, "freeze": True},
        {"actions": [ACTION], "embargoes": [], "eval_only_since": -1, "freeze": False},
        {"actions": [ACTION], "embargoes": [{"languages": ["!!"]}], "eval_only_since": None, "freeze": False},
    ],
    ids=["no-demand", "no-action", "unsorted", "repeated", "bad-id", "negative-start", "bad-selector"],
)
def test_joint_manifest_refuses_a_malformed_or_second_way_to_write_it(joint: dict[str, object]) -> None:
    with pytest.raises(ManifestError) as caught:
        check_manifest(_resealed(_payload(), joint=joint), trusted=TRUSTED)
    assert caught.value.reason is Reason.MALFORMED


def test_joint_union_only_adds_demands() -> None:
    declared = JointRules(freeze=True, eval_only_since=9, actions=("b",))
    verified = JointRules(
        embargoes=(JointSelector(tags=("x",)),), eval_only_since=5, ai_use="train-ai=n", actions=("a",)
    )
    both = joint_union(declared, verified)
    assert both.freeze and both.embargoes == verified.embargoes and both.eval_only_since == 5
    assert both.ai_use == "train-ai=n" and both.actions == ("a", "b")
    assert joint_union(JointRules(), verified) is verified and joint_union(declared, JointRules()) is declared


# -- three co-ops: B does not know C, who proposed -------------------------------------------------


def _pin(node: Node, other: Node) -> None:
    other_id = other.identity.node_id
    node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[Node, Node, Node]]:
    """A pinned with B and with C; B does not know C."""
    a, b, c = make_node(tmp_path, "A"), make_node(tmp_path, "B"), make_node(tmp_path, "C")
    try:
        for x, y in ((a, b), (b, a), (a, c), (c, a)):
            _pin(x, y)
        yield a, b, c
    finally:
        for node in (a, b, c):
            node.close()


def _share(source: Node, target: Node) -> None:
    actions, statements = source.federation.joint.book.items_for(target.federation.joint.book.digest())
    target.federation.joint.book.receive(actions, statements)


def _receive(origin: Node, peer: Node) -> None:
    chain = origin.federation.store.chain_after(origin.identity.node_id, 0, 1000)
    peer.federation.book.receive(chain, now=origin.now())


def _federated_uids(node: Node) -> set[str]:
    summary = node.cut_federated_release()
    folder = node.data.releases_path / "federated" / summary.name
    return {
        json.loads(line)["uid"]
        for path in folder.glob("*/data.jsonl")
        for line in path.read_text().splitlines()
    }


def _declared(node: Node) -> dict[str, object] | None:
    head = node.federation.store.heads()[node.identity.node_id]
    (envelope,) = node.federation.store.envelopes(node.identity.node_id, [head.hash])
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 26)
    joint: dict[str, object] | None = json.loads(payload).get("joint")
    return joint


def test_joint_manifest_a_peer_that_cannot_verify_the_action_still_stops_republishing(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    a_id = a.identity.node_id
    member, _ = make_member(a)
    uid = contribute(a, member, scope="public")
    process(a)
    a.cut_release()
    a.federation.issue()
    _receive(a, b)
    wanted = b.federation.book.record_wants()
    got, _ = a.federation.fetch([e.hash for _, e in wanted], requester=b.identity.node_id)
    b.federation.book.receive_records(wanted, got)
    assert _federated_uids(b) == {uid}
    assert _declared(a) is None  # nothing binds A: nothing declared
    # C proposes a freeze naming A and C (k = 1); A signs alone: A is bound.
    view, _ = c.federation.joint.propose(
        kind="freeze",
        reason="strike",
        threshold=1,
        coops=[a_id, c.identity.node_id],
        actor=ADMIN,
        ends_at=c.now() + DAY,
    )
    _share(c, a)
    seq = a.federation.store.heads()[a_id].seq
    a.federation.joint.sign(view.id, actor=ADMIN)
    # The sign is news: A issued a manifest declaring the freeze (no cut, no round needed).
    assert a.federation.store.heads()[a_id].seq == seq + 1
    assert _declared(a) == {"actions": [view.id], "embargoes": [], "eval_only_since": None, "freeze": True}
    # B cannot verify the action (C's key is unknown to it) ...
    _share(a, b)
    assert a_id not in b.federation.joint.all_rules()
    # ... but A's own manifest says it is bound.
    _receive(a, b)
    assert b.federation.store.heads()[a_id].joint.freeze
    state = b.store.read(lambda conn: origin_states(conn, joint=b.federation.joint.all_rules()))[a_id]
    assert state.joint.freeze and state.joint.actions == (view.id,)
    assert _federated_uids(b) == set()
    assert b.federation.mirrored(a_id, audience=Audience.FEDERATED) == []
    # The heads keep it across a reopen, and read it again from the head manifest when unknown.
    b.store.write(lambda conn: conn.execute("UPDATE fed_origins SET joint = NULL"))
    again = Node(b.data.root)
    try:
        assert again.federation.store.heads()[a_id].joint.freeze
    finally:
        again.close()
    # The end is news too: the next manifest declares nothing.
    a.federation.joint.end(view.id, actor=ADMIN)
    assert _declared(a) is None
    _receive(a, b)
    assert not b.federation.store.heads()[a_id].joint
    assert _federated_uids(b) == {uid}
