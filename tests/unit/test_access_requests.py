"""Access requests and grants: ask, approve (alone or by a vote), refuse, revoke; builders never vote.

Also the settings side: the ACCESS class and its section, and settings stored before they
existed still decode (an upgraded node keeps its stored digest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from coop.governance import Choice, InvalidValueError, SettingClass, Settings, apply_changes
from coop.governance.canonical import canonical_bytes
from coop.node.access.requests import terms_digest
from coop.node.collective.audit import recent_entries
from coop.node.collective.proposals import close_expired, get_proposal
from coop.node.collective.settings import Actor, current_settings, store_settings
from coop.node.errors import ConflictError, ForbiddenError, InputError, StateError
from coop.node.members.accounts import Member, Role
from coop.node.members.repository import add_member
from coop.node.runtime import Node

from factories import make_member, make_node

GATED = "CC-BY-4.0"
ADMIN = Actor("ada", admin=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    found = make_node(tmp_path)
    try:
        found.change_settings({"access.gated": [GATED]}, actor=ADMIN)
        yield found
    finally:
        found.close()


def builder(node: Node, name: str = "bea") -> Member:
    added, _ = node.store.write(
        lambda c: add_member(c, name=name, role=Role.BUILDER, salt=node.salt, now=node.now())
    )
    return added


def ask(node: Node, member: Member, **changes: object) -> object:
    values: dict[str, object] = {
        "who": "Bea Builder, Example Lab",
        "purpose": "fine-tune a small assistant",
        "model": "example/tenant-7b",
        "open_weights": True,
        "buckets": (GATED,),
        "accept_terms": True,
        **changes,
    }
    return node.access.request(member, **values)  # type: ignore[arg-type]


def actions(node: Node) -> list[str]:
    return [e.action for e in node.store.read(lambda c: recent_entries(c, limit=200))]


def test_a_request_is_pending_with_the_terms_digest_and_audited(node: Node) -> None:
    bea = builder(node)
    view = ask(node, bea)
    assert view.state == "pending" and not view.usable
    assert view.terms_digest == terms_digest(node.settings().settings.access)
    assert view.member == "bea" and view.buckets == (GATED,)
    assert "access.request" in actions(node)
    entry = next(
        e for e in node.store.read(lambda c: recent_entries(c, limit=200)) if e.action == "access.request"
    )
    assert "Bea Builder" not in msgspec.json.encode(entry.payload).decode()  # free text stays out of the log
    assert [r.id for r in node.access.requests(member=bea)] == [view.id]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"accept_terms": False}, InputError),
        ({"buckets": ("CC0-1.0",)}, InputError),  # not gated here
        ({"buckets": ()}, InputError),
        ({"who": "  "}, InputError),
        ({"model": "x" * 201}, InputError),
    ],
)
def test_bad_requests_are_refused(node: Node, changes: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ask(node, builder(node), **changes)


def test_open_weights_only_refuses_closed_models_at_request_time(node: Node) -> None:
    node.change_settings({"access.open_weights_only": True}, actor=ADMIN)
    bea = builder(node)
    with pytest.raises(ForbiddenError):
        ask(node, bea, open_weights=False)
    assert ask(node, bea).state == "pending"


def test_an_admin_approves_alone_then_revokes(node: Node) -> None:
    view = ask(node, builder(node))
    approved, proposal = node.access.approve(view.id, actor=ADMIN)
    assert proposal is None
    assert approved.state == "approved" and approved.usable and approved.decided_by == "ada"
    assert approved.expires_at == approved.decided_at + 90 * 86_400
    with pytest.raises(StateError):
        node.access.approve(view.id, actor=ADMIN)
    revoked = node.access.revoke(view.id, actor=ADMIN)
    assert revoked.state == "revoked" and not revoked.usable
    assert {"access.approve", "access.revoke"} <= set(actions(node))


def test_only_admins_decide_and_refuse_is_final(node: Node) -> None:
    view = ask(node, builder(node))
    with pytest.raises(ForbiddenError):
        node.access.approve(view.id, actor=Actor("bea", admin=False))
    refused = node.access.refuse(view.id, actor=ADMIN)
    assert refused.state == "refused"
    with pytest.raises(StateError):
        node.access.approve(view.id, actor=ADMIN)
    with pytest.raises(StateError):
        node.access.revoke(view.id, actor=ADMIN)


def test_an_undecided_pile_is_bounded(node: Node) -> None:
    bea = builder(node)
    for _ in range(5):
        ask(node, bea)
    with pytest.raises(ConflictError):
        ask(node, bea)


def _needs_a_vote(node: Node) -> None:
    def write(c: object) -> None:
        current = current_settings(c).settings  # type: ignore[arg-type]
        rules = apply_changes(current, {"rules.classes.access.admin_alone": False})
        store_settings(c, rules, at=node.now(), actor="test", via="test")  # type: ignore[arg-type]

    node.store.write(write)


def test_where_the_rule_needs_a_vote_approval_opens_one_and_the_vote_grants(node: Node) -> None:
    _needs_a_vote(node)
    voters = [make_member(node)[0] for _ in range(2)]
    bea = builder(node)
    view = ask(node, bea)
    voting, proposal = node.access.approve(view.id, actor=ADMIN)
    assert proposal is not None and voting.state == "voting" and voting.proposal_id == proposal.id
    assert proposal.classes == ["access"] and proposal.changes == {"access.grant": view.id}
    assert proposal.electorate == 2  # the builder is not in the electorate
    with pytest.raises(ForbiddenError):
        node.vote(proposal.id, bea, Choice.YES)  # nor may a builder vote
    with pytest.raises(ForbiddenError):
        node.propose({"quality_freeze": True}, reason="stop", actor=Actor("bea", admin=False))  # nor propose
    for voter in voters:
        if node.vote(proposal.id, voter, Choice.YES).status.value != "open":
            break  # decided once the rest cannot change the outcome
    granted = node.access.get(view.id)
    assert granted.state == "approved" and granted.usable and granted.decided_by == f"proposal {proposal.id}"
    assert node.store.read(lambda c: get_proposal(c, proposal.id)).status.value == "passed"


def test_a_vote_that_fails_leaves_the_request_refused(node: Node) -> None:
    _needs_a_vote(node)
    voters = [make_member(node)[0] for _ in range(2)]
    view = ask(node, builder(node))
    _, proposal = node.access.approve(view.id, actor=ADMIN)
    assert proposal is not None
    for voter in voters:
        node.vote(proposal.id, voter, Choice.NO)
    assert node.access.get(view.id).state == "voting"
    node.store.write(lambda c: close_expired(c, at=proposal.closes_at, signer=node.signer))
    assert node.access.get(view.id).state == "refused"
    with pytest.raises(StateError):
        node.access.approve(view.id, actor=ADMIN)


def test_builders_do_not_contribute(node: Node) -> None:
    from factories import contribute

    with pytest.raises(ForbiddenError):
        contribute(node, builder(node))


def test_the_access_class_and_section() -> None:
    settings = Settings()
    assert settings.rules.rule(SettingClass.ACCESS).admin_alone
    assert settings.access.grant_days == 90 and settings.access.url_seconds == 300
    assert settings.access.terms  # no re-identification; honour licences and preferences
    for changes in (
        {"access.gated": ["not-a-licence"]},
        {"access.grant_days": 0},
        {"access.url_seconds": 3601},
        {"access.downloads_per_hour": 0},
    ):
        with pytest.raises(InvalidValueError) as refused:
            apply_changes(settings, changes)
        assert refused.value.field.startswith("access")


def test_settings_stored_before_the_access_class_still_decode() -> None:
    old = msgspec.to_builtins(Settings())
    del old["access"]
    del old["rules"]["classes"]["access"]
    decoded = msgspec.json.decode(canonical_bytes(old), type=Settings)
    assert decoded.access == Settings().access
    assert decoded.rules.rule(SettingClass.ACCESS) == Settings().rules.rule(SettingClass.ACCESS)
    assert decoded == Settings()


def test_cli_member_add_role_builder(tmp_path: Path) -> None:
    from coop.node.cli.admin import member

    node = make_node(tmp_path)
    root = node.data.root
    node.close()
    result = CliRunner().invoke(member, ["add", str(root), "bea", "--role", "builder", "--json"])
    assert result.exit_code == 0, result.output
    assert msgspec.json.decode(result.output)["role"] == "builder"
    result = CliRunner().invoke(member, ["add", str(root), "bo", "--role", "builder", "--admin"])
    assert result.exit_code != 0


def test_a_revocation_records_who_revoked_beside_who_approved(node: Node) -> None:
    view = ask(node, builder(node))
    node.access.approve(view.id, actor=ADMIN)
    revoked = node.access.revoke(view.id, actor=Actor("rosa", admin=True))
    assert (revoked.decided_by, revoked.revoked_by) == ("ada", "rosa")
    assert revoked.revoked_at is not None
    assert node.access.get(view.id).revoked_by == "rosa"


def test_a_vote_on_a_request_tells_the_members_who_asks_and_why(node: Node) -> None:
    _needs_a_vote(node)
    make_member(node)
    long_purpose = "evaluate tenants' letters " + "x" * 1500
    view = ask(node, builder(node), who="Bea Builder, Example Lab", purpose=long_purpose, open_weights=False)
    _, proposal = node.access.approve(view.id, actor=ADMIN)
    assert proposal is not None
    reason = proposal.reason
    assert "Who asks: Bea Builder, Example Lab." in reason
    assert "Purpose: evaluate tenants' letters x" in reason and "x" * 400 not in reason  # cut to ~300
    assert "example/tenant-7b (weights not published)" in reason
    assert GATED in reason and "90 days" in reason
    assert len(reason) < 1000


def test_approving_a_request_under_vote_again_names_the_open_proposal(node: Node) -> None:
    _needs_a_vote(node)
    make_member(node)
    view = ask(node, builder(node))
    _, proposal = node.access.approve(view.id, actor=ADMIN)
    assert proposal is not None
    with pytest.raises(StateError) as raised:
        node.access.approve(view.id, actor=ADMIN)
    assert f"proposal {proposal.id} is open: the members decide" in str(raised.value)
