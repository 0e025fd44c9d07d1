"""Issue 11, hostile-peer review (4) and (8): nothing is booked under a peer before its
signature verifies, and what is booked lands on the peer's node id, rotated keys included.

V (node ``a``) pinned O (node ``b``); S (node ``c``) is a stranger with a key of its own.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.federation import (
    ClockSkewError,
    MemoryReplayCache,
    RequestAuthError,
    check_signature_headers,
    sign_request,
    verify_request,
)
from coop.governance import public_key
from coop.governance.signing import Signer
from coop.node.peering.peers import PeerView
from coop.node.peering.refusals import KEPT, Refusal, recent_refusals, record_refusal
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

SUMMARY = b'{"summary":"' + b"0" * 64 + b'"}'
_COUNTER = iter(range(1_000_000))


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[Node, Node, Node]]:
    """V and O pinned each other; S is a co-op V never pinned."""
    v, o, s = make_node(tmp_path, "V"), make_node(tmp_path, "O"), make_node(tmp_path, "S")
    try:
        v.federation.add_peer("http://127.0.0.1:9/o", o.identity.node_id, name="o", actor="test")
        o.federation.add_peer("http://127.0.0.1:9/v", v.identity.node_id, name="v", actor="test")
        yield v, o, s
    finally:
        for node in (v, o, s):
            node.close()


def _url(to: Node, step: str = "summary") -> str:
    return to.config.node.public_url.rstrip("/") + f"/federation/v1/{step}"


def _signed(
    to: Node, seed: Signer, *, now: int, step: str = "summary", body: bytes = SUMMARY
) -> dict[str, str]:
    nonce = f"attribution-{next(_COUNTER):08d}"
    return sign_request("POST", _url(to, step), body, signer=seed, now=now, nonce=nonce)


def _claiming(headers: dict[str, str], keyid: str) -> dict[str, str]:
    """The headers with another key id written into Signature-Input (what a forger does)."""
    forged = re.sub(r'keyid="[0-9a-f]{64}"', f'keyid="{keyid}"', headers["Signature-Input"])
    assert forged != headers["Signature-Input"]
    return {**headers, "Signature-Input": forged}


def _send(to: Node, headers: dict[str, str], *, step: str = "summary", body: bytes = SUMMARY) -> bytes:
    return to.federation.handle(
        step, "POST", _url(to, step), headers, body, ip="127.0.0.9", user_agent="test"
    )


def _admit(to: Node, headers: dict[str, str], *, step: str = "summary", body: bytes = SUMMARY) -> None:
    to.federation.admit(
        step, "POST", _url(to, step), headers, length=len(body), ip="127.0.0.9", user_agent="test"
    )


def _peer(v: Node, o: Node) -> PeerView:
    (peer,) = [p for p in v.federation.peers() if p.node_id == o.identity.node_id]
    return peer


@pytest.mark.parametrize("kind", ["bad time", "bad signature", "o's signature replanted"])
@pytest.mark.parametrize("route", ["admit", "handle"])
def test_request_claiming_a_peers_keyid_leaves_the_peer_untouched(
    trio: tuple[Node, Node, Node], kind: str, route: str
) -> None:
    v, o, s = trio
    now = v.now()
    forged = {
        # The reviewer's: a stranger's key, created = now + 4000, O's key id written in.
        "bad time": _claiming(_signed(v, s.signer, now=now + 4000), o.identity.node_id),
        "bad signature": _claiming(_signed(v, s.signer, now=now), o.identity.node_id),
        # O's real signature, lifted from another request.
        "o's signature replanted": {
            **_claiming(_signed(v, s.signer, now=now), o.identity.node_id),
            "Signature": _signed(v, o.signer, now=now, body=b"{}")["Signature"],
        },
    }[kind]
    with pytest.raises(RequestAuthError) as caught:
        (_admit if route == "admit" else _send)(v, forged)
    # Refused for its signature, never for its time: nobody's clock was measured.
    assert not isinstance(caught.value, ClockSkewError)
    assert caught.value.signer is None
    peer = _peer(v, o)
    assert (peer.last_error, peer.clock_skew, peer.refused) == (None, None, ())
    assert v.federation.skewed_peers() == []
    (refusal,) = v.store.read(recent_refusals)
    assert (refusal.node_id, refusal.keyid, refusal.reason) == (None, o.identity.node_id, "unauthenticated")


def test_forged_requests_do_not_push_a_peers_real_refusals_out(trio: tuple[Node, Node, Node]) -> None:
    v, o, s = trio
    with pytest.raises(ClockSkewError):
        _send(v, _signed(v, o.signer, now=v.now() + 4000))
    for _ in range(25):
        with pytest.raises(RequestAuthError):
            _send(v, _claiming(_signed(v, s.signer, now=v.now() + 4000), o.identity.node_id))
    peer = _peer(v, o)
    assert [r.reason for r in peer.refused] == ["clock_skew"]
    assert peer.clock_skew == -4000


def test_refusals_of_no_peer_go_first_when_the_table_is_full(trio: tuple[Node, Node, Node]) -> None:
    v, o, _ = trio
    peer = o.identity.node_id

    def write(conn: sqlite3.Connection) -> None:
        record_refusal(conn, Refusal(at=1, step="push", reason="rollback", detail="real", node_id=peer))
        for i in range(KEPT + 50):
            record_refusal(conn, Refusal(at=2 + i, step="summary", reason="unauthenticated", detail=f"#{i}"))

    v.store.write(write)
    assert [r.detail for r in v.store.read(lambda conn: recent_refusals(conn, peer))] == ["real"]
    (total,) = v.store.read(lambda conn: conn.execute("SELECT count(*) FROM peer_refusals").fetchone())
    assert total == KEPT


@pytest.mark.parametrize("route", ["admit", "handle"])
def test_skewed_request_the_peer_signed_is_attributed_with_its_offset(
    trio: tuple[Node, Node, Node], route: str
) -> None:
    v, o, _ = trio
    with pytest.raises(ClockSkewError) as caught:
        (_admit if route == "admit" else _send)(v, _signed(v, o.signer, now=v.now() + 4000))
    assert caught.value.signer == o.identity.node_id
    peer = _peer(v, o)
    assert peer.clock_skew == -4000  # ours minus the peer's
    assert peer.last_error is not None and "+4000 s" in peer.last_error
    assert [(r.node_id, r.reason) for r in peer.refused] == [(o.identity.node_id, "clock_skew")]


def test_check_signature_headers_verifies_before_it_reads_the_time() -> None:
    stranger, peer = bytes(range(32)), bytes(range(1, 33))
    peer_id = public_key(peer).hex()
    url = "http://v.example:8001/federation/v1/summary"
    own = frozenset({"v.example:8001"})

    def key_of(keyid: str) -> bytes | None:
        return bytes.fromhex(keyid) if keyid == peer_id else None

    now = 1_760_000_000
    forged = _claiming(
        sign_request("POST", url, SUMMARY, signer=Signer(stranger), now=now + 4000, nonce="f" * 24), peer_id
    )
    with pytest.raises(RequestAuthError, match="does not verify") as caught:
        check_signature_headers("POST", url, forged, key_of=key_of, now=now, authorities=own)
    assert not isinstance(caught.value, ClockSkewError) and caught.value.signer is None
    real = sign_request("POST", url, SUMMARY, signer=Signer(peer), now=now + 4000, nonce="r" * 24)
    with pytest.raises(ClockSkewError) as skewed:
        check_signature_headers("POST", url, real, key_of=key_of, now=now, authorities=own)
    assert skewed.value.signer == peer_id
    # The body's digest is compared after the body is read. A captured request's headers with
    # another body, or an expired captured request, prove nothing about the peer: no signer.
    fresh = sign_request("POST", url, SUMMARY, signer=Signer(peer), now=now, nonce="d" * 24)
    check_signature_headers("POST", url, fresh, key_of=key_of, now=now, authorities=own)
    with pytest.raises(RequestAuthError, match="does not match the body") as mismatch:
        verify_request(
            "POST", url, fresh, b"{}", key_of=key_of, now=now, replay=MemoryReplayCache(), authorities=own
        )
    assert mismatch.value.signer is None
    old = sign_request("POST", url, SUMMARY, signer=Signer(peer), now=now - 7200, nonce="o" * 24)
    with pytest.raises(ClockSkewError, match="expired") as expired:
        check_signature_headers("POST", url, old, key_of=key_of, now=now, authorities=own)
    assert expired.value.signer is None


def test_rotated_peers_contact_is_booked_under_its_node_id(tmp_path: Path) -> None:
    v, o = make_node(tmp_path, "V"), make_node(tmp_path, "O")
    try:
        member, _ = make_member(o)
        contribute(o, member)
        process(o)
        o.cut_release()
        o.federation.issue()
        v.federation.add_peer("http://127.0.0.1:9/o", o.identity.node_id, name="o", actor="test")
        o.federation.rotate_key(actor="test")
        assert o.identity.public_key.hex() != o.identity.node_id
        # V learns of the rotation the way gossip brings it: O's chain, the rotation included.
        chain = o.federation.store.chain_after(o.identity.node_id, 0, 100)
        v.federation.book.receive(chain, now=v.now())
        assert v.federation.node_of(o.identity.public_key.hex()) == o.identity.node_id
        before = _peer(v, o)
        _send(v, _signed(v, o.signer, now=v.now()))
        after = _peer(v, o)
        assert after.contacts == before.contacts + 1
        assert after.last_contact is not None
    finally:
        v.close()
        o.close()
