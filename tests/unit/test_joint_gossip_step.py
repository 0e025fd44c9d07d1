"""The protocol's ``joint`` step: two books converge both ways; forged items are refused, never kept."""

from __future__ import annotations

import secrets
from pathlib import Path

from coop.federation import Book, MemoryBookStore, Responder
from coop.federation.errors import FederationError
from coop.federation.joint import (
    JointAction,
    JointBook,
    JointMessage,
    JointStatement,
    MemoryJointStore,
    make_action,
    make_statement,
)
from coop.federation.joint_gossip import answer_joint, joint_tag
from coop.federation.protocol import sync_with
from coop.federation.transport import MemoryTransport, Request, Response
from coop.governance import JointKind
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor

from factories import make_node

NOW = 1_800_000_000
SIGNERS = [Signer(bytes([i + 7]) * 32) for i in range(3)]
IDS = [s.public_key.hex() for s in SIGNERS]
KEYS = dict(zip(IDS, IDS, strict=True))  # node id = its first key, as on a node
STRANGER = Signer(b"\x55" * 32)


class _NoRecords:
    def fetch(self, hashes: list[str], *, requester: str | None = None) -> tuple[dict[str, bytes], list[str]]:
        return {}, list(hashes)


def _book(index: int) -> Book:
    book = Book(IDS[index], {i: i for i in IDS if i != IDS[index]}, MemoryBookStore())
    book.joint = JointBook(MemoryJointStore(), keys=lambda: KEYS, clock=lambda: NOW)
    return book


def _action(proposer: int, *, signer: Signer | None = None, threshold: int = 2) -> bytes:
    action = JointAction(
        proposer=IDS[proposer],
        kind=JointKind.EMBARGO,
        reason="together",
        starts_at=NOW,
        ends_at=NOW + 86_400,
        threshold=threshold,
        coops=tuple(sorted(IDS[:2])),
        created_at=NOW,
        nonce=secrets.token_hex(16),
    )
    return make_action(action, signer or SIGNERS[proposer])


def _sign(action_id: str, coop: int, *, signer: Signer | None = None) -> bytes:
    statement = JointStatement(action=action_id, coop=IDS[coop], decision="sign", at=NOW, via="admin")
    return make_statement(statement, signer or SIGNERS[coop])


def _sync(caller: Book, server: Book) -> tuple[MemoryTransport, list[str]]:
    """One exchange, ``caller`` starting it; returns the transport and the steps sent."""
    transport = MemoryTransport()
    steps: list[str] = []

    def handle(request: Request) -> Response:
        step = request.url.rsplit("/", 1)[-1]
        steps.append(step)
        try:
            body = Responder(server, _NoRecords()).handle(
                step, request.body, now=NOW, requester=caller.self_id
            )
        except FederationError as exc:
            return Response(status=400, headers={}, body=exc.message.encode())
        return Response(status=200, headers={}, body=body)

    transport.routes["http://127.0.0.1:9"] = handle
    report = sync_with("http://127.0.0.1:9", caller, transport, signer=lambda *_: {}, now=NOW, records=False)
    assert report.error is None, report.error
    return transport, steps


def test_two_books_converge_both_ways_in_one_exchange() -> None:
    first, second = _book(0), _book(1)
    assert first.joint is not None and second.joint is not None
    mine = first.joint.offer_action(_action(0))
    first.joint.offer_statement(_sign(mine.id, 0))
    theirs = second.joint.offer_action(_action(1))
    second.joint.offer_statement(_sign(theirs.id, 1))
    assert first.summary() != second.summary()

    _, steps = _sync(first, second)

    assert "joint" in steps
    assert first.joint.digest() == second.joint.digest()
    assert {v.id for v in second.joint.views()} == {mine.id, theirs.id}
    assert joint_tag(first.joint) == joint_tag(second.joint) != ""
    # A second exchange finds nothing to do: equal summaries end it at once.
    _, again = _sync(first, second)
    assert again == ["summary"]


def test_signatures_gathered_by_gossip_make_the_action_bind() -> None:
    first, second = _book(0), _book(1)
    assert first.joint is not None and second.joint is not None
    opened = first.joint.offer_action(_action(0))
    first.joint.offer_statement(_sign(opened.id, 0))
    _sync(first, second)
    second.joint.offer_statement(_sign(opened.id, 1))
    assert first.joint.rules() == {}  # one of two
    _sync(second, first)
    assert set(first.joint.rules()) == set(second.joint.rules()) == {IDS[0], IDS[1]}


def test_forged_items_are_refused_and_kept_nowhere() -> None:
    first, second = _book(0), _book(1)
    assert first.joint is not None and second.joint is not None
    real = first.joint.offer_action(_action(0))
    forged_action = _action(0, signer=STRANGER)  # claims co-op 0 proposed it
    other_key = _action(1, signer=SIGNERS[0])  # co-op 0's key for co-op 1's action
    forged_sign = _sign(real.id, 1, signer=SIGNERS[0])  # co-op 0 signing as co-op 1
    message = JointMessage(actions=(forged_action, other_key), statements=(forged_sign,))
    answer = answer_joint(second.joint, message)
    assert second.joint.views() == [] and second.joint.digest().statements == ()
    assert answer.digest.actions == ()
    # The real one still travels; the forged signature does not make it bind.
    second.joint.receive([real.envelope], [forged_sign])
    assert [v.id for v in second.joint.views()] == [real.id]
    assert second.joint.views()[0].signers == ()


def test_an_older_peer_without_the_step_is_left_alone() -> None:
    first, second = _book(0), _book(1)
    second.joint = None  # an older node: no joint book, it answers nothing of it
    assert first.joint is not None
    first.joint.offer_action(_action(0))
    _, steps = _sync(first, second)
    assert "joint" in steps  # asked; the empty answer is fine
    assert first.joint.views() != []


def test_two_nodes_converge_through_their_responders(tmp_path: Path) -> None:
    from coop.node.http.federation import _STEPS
    from coop.node.peering.serving import STEP_CAPS

    assert "joint" in _STEPS and "joint" in STEP_CAPS  # served like the roster step
    a, b = make_node(tmp_path, "A"), make_node(tmp_path, "B")
    try:
        ids = [a.identity.node_id, b.identity.node_id]
        for node, other in ((a, b), (b, a)):
            node.federation.add_peer(
                f"http://127.0.0.1:9/{other.identity.node_id[:8]}",
                other.identity.node_id,
                name=None,
                actor="test",
            )
        view, _ = a.federation.joint.propose(
            kind="freeze",
            reason="both",
            threshold=2,
            coops=ids,
            actor=Actor("ada", admin=True),
            ends_at=a.now() + 9_000,
        )
        transport = MemoryTransport()

        def handle(request: Request) -> Response:
            step = request.url.rsplit("/", 1)[-1]
            body = Responder(b.federation.book, b.federation.serving).handle(
                step, request.body, now=b.now(), requester=ids[0]
            )
            return Response(status=200, headers={}, body=body)

        transport.routes["http://127.0.0.1:9"] = handle
        report = sync_with(
            "http://127.0.0.1:9",
            a.federation.book,
            transport,
            signer=lambda *_: {},
            now=a.now(),
            records=False,
        )
        assert report.error is None
        assert [v.id for v in b.federation.joint.list()] == [view.id]
        b.federation.joint.sign(view.id, actor=Actor("bo", admin=True))
        sync_with(
            "http://127.0.0.1:9",
            a.federation.book,
            transport,
            signer=lambda *_: {},
            now=a.now(),
            records=False,
        )
        assert a.federation.joint.rules().freeze and b.federation.joint.rules().freeze
    finally:
        a.close()
        b.close()
