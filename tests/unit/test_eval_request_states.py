"""`coop eval requests` shows where each request stands: answered, declined and why, refused,
expired, pending an admin or approved — not the admin's decision alone (an automatically
answered request used to show as ``pending``)."""

from __future__ import annotations

import pytest
from test_evaluation_node import ADMIN, _answer, _model, _request, node

from coop.eval import open_attestation
from coop.node.evaluation import repository as requests_db
from coop.node.evaluation.repository import request_state
from coop.node.runtime import Node

__all__ = ["node"]  # the fixture, shared with the node's evaluation tests


def _states(node: Node, *, now: int | None = None) -> list[tuple[str, str | None]]:
    at = node.now() if now is None else now
    return [(r.state, r.reason) for r in node.store.read(lambda c: requests_db.list_requests(c, now=at))]


def test_an_automatically_answered_request_shows_answered_with_its_record_count(node: Node) -> None:
    model = _model()
    answer = _answer(node, _request(node, model), model)
    assert answer.attestation is not None
    (view,) = node.evaluation.requests()
    assert (view.state, view.status) == ("answered", "pending")  # no admin decided: none was needed
    assert view.records == open_attestation(answer.attestation.encode())[0].records == 23
    assert view.answered_at is not None


def test_a_declined_request_says_why(node: Node) -> None:
    model = _model()
    node.change_settings({"embargo.on": True}, actor=ADMIN)
    _answer(node, _request(node, model), model)
    assert _states(node) == [("declined", "embargo")]


def test_admin_approval_moves_a_request_from_pending_to_approved_to_answered(node: Node) -> None:
    model = _model()
    node.change_settings({"eval_policy.approval": "admin"}, actor=ADMIN)
    envelope = _request(node, model)
    _answer(node, envelope, model)
    assert _states(node) == [("pending", None)]  # waiting for an admin, not declined
    (view,) = node.evaluation.requests()
    node.evaluation.decide(view.hash, approve=True, admin="ada")
    assert _states(node) == [("approved", None)]
    _answer(node, envelope, model)
    assert _states(node) == [("answered", None)]


def test_a_refused_request_shows_refused_and_one_never_run_expires(node: Node) -> None:
    model = _model()
    node.change_settings({"eval_policy.approval": "admin"}, actor=ADMIN)
    _answer(node, _request(node, model), model)
    (view,) = node.evaluation.requests()
    assert view.expires_at is not None
    assert _states(node, now=view.expires_at) == [("expired", None)]
    node.evaluation.decide(view.hash, approve=False, admin="ada")
    assert _states(node) == [("refused", None)]


@pytest.mark.parametrize(
    ("status", "outcome", "now", "expected"),
    [
        ("pending", None, 10, ("pending", None)),
        ("pending", "answered", 500, ("answered", None)),  # answered stays answered after expiry
        ("approved", "awaiting_admin_approval", 10, ("approved", None)),
        ("pending", "awaiting_admin_approval", 100, ("expired", None)),
        ("pending", "quality_freeze", 10, ("declined", "quality_freeze")),
        ("refused", "awaiting_admin_approval", 500, ("refused", None)),
    ],
)
def test_request_state_rules(
    status: str, outcome: str | None, now: int, expected: tuple[str, str | None]
) -> None:
    assert request_state(status, outcome, 100, now=now) == expected
