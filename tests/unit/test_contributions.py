"""Contributions in the store: idempotency, the pipeline's claims, withdrawal, rectification, review."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.governance import Channel, Label, License
from coop.node.contributions import repository as contrib
from coop.node.contributions import review, rights
from coop.node.contributions.repository import Decision, Idempotency
from coop.node.contributions.submission import ContributionRequest, ContributionState, EditRequest
from coop.node.errors import BusyError, ConflictError, NotFoundError, StateError
from coop.node.ids import uuid7
from coop.node.runtime import Node

from factories import chat_text, contribute, make_member, make_node, process

S = ContributionState


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _state(node: Node, uid: str) -> ContributionState:
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None
    return detail.view.state


def _insert(node: Node, member: object, text: str, key: Idempotency | None) -> contrib.InsertResult:
    request = msgspec.json.decode(
        msgspec.json.encode({"label": "good", "consent": True, "content": text}), type=ContributionRequest
    )
    sub, _ = node.build_submission(request, channel=Channel.API, member=member)  # type: ignore[arg-type]
    uid = uuid7()
    return node.store.write(
        lambda c: contrib.insert_contribution(
            c,
            uid=uid,
            member=member,
            submission=sub,
            now=1,
            idempotency=key,
            client=None,  # type: ignore[arg-type]
        )
    )


def test_insert_contribution_same_idempotency_key_returns_first(node: Node) -> None:
    member, _ = make_member(node)
    key = Idempotency(scope="m1", key="k", request_sha256="a" * 64)
    first = _insert(node, member, chat_text("x"), key)
    again = _insert(node, member, chat_text("x"), key)
    assert first.created and not again.created
    assert again.uid == first.uid
    assert len(node.store.read(lambda c: contrib.list_member_contributions(c, member.id))) == 1


def test_insert_contribution_key_reused_for_other_body_is_conflict(node: Node) -> None:
    member, _ = make_member(node)
    _insert(node, member, chat_text("x"), Idempotency(scope="m1", key="k", request_sha256="a" * 64))
    with pytest.raises(ConflictError) as caught:
        _insert(node, member, chat_text("y"), Idempotency(scope="m1", key="k", request_sha256="b" * 64))
    assert caught.value.field == "Idempotency-Key"
    assert len(node.store.read(lambda c: contrib.list_member_contributions(c, member.id))) == 1


def test_process_pending_moves_waiting_room_to_accepted(node: Node) -> None:
    member, _ = make_member(node)
    uids = [contribute(node, member) for _ in range(5)]
    process(node)
    assert [_state(node, uid) for uid in uids] == [S.ACCEPTED] * 5


def test_process_pending_same_conversation_twice_is_duplicate(node: Node) -> None:
    member, _ = make_member(node)
    first = contribute(node, member, text=chat_text("bread"))
    second = contribute(node, member, text=chat_text("bread").upper().replace(" ", "   "))
    process(node)
    assert _state(node, first) is S.ACCEPTED
    assert _state(node, second) is S.DUPLICATE


def test_finish_batch_row_withdrawn_meanwhile_is_left_withdrawn(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    claimed = node.store.write(lambda c: review.claim_batch(c, claim=7, limit=10))
    assert [item.uid for item in claimed] == [uid]
    node.store.write(lambda c: rights.withdraw_contribution(c, uid=uid, member=member, now=2))
    from coop.node.contributions.pipeline import process_entry

    item = claimed[0]
    outcome = process_entry(
        item.submission, uid=uid, created_at=1, contributor=item.contributor, salt=node.salt, threshold=5
    )
    report = node.store.write(
        lambda c: review.finish_batch(c, claim=7, outcomes=[(item.seq, outcome)], now=3)
    )
    assert report.skipped == 1
    assert _state(node, uid) is S.WITHDRAWN


def test_processor_lock_second_holder_is_refused(node: Node) -> None:
    with node.processor_lock(), pytest.raises(BusyError), node.processor_lock():
        pass


def test_processor_lock_recovers_claims_left_by_a_dead_processor(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    node.store.write(lambda c: review.claim_batch(c, claim=99, limit=10))
    assert _state(node, uid) is S.PROCESSING
    process(node)
    assert _state(node, uid) is S.ACCEPTED


def test_withdraw_contribution_waiting_room_erases_content_at_once(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    node.store.write(lambda c: rights.withdraw_contribution(c, uid=uid, member=member, now=5))
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None
    assert detail.view.state is S.WITHDRAWN
    assert detail.submission is None and detail.record is None
    tombstones = node.store.read(lambda c: c.execute("SELECT count(*) FROM tombstones").fetchone()[0])
    assert tombstones == 0  # never published: nothing to tell mirrors


def test_withdraw_contribution_of_another_member_is_not_found(node: Node) -> None:
    owner, _ = make_member(node)
    other, _ = make_member(node)
    uid = contribute(node, owner)
    with pytest.raises(NotFoundError):
        node.store.write(lambda c: rights.withdraw_contribution(c, uid=uid, member=other, now=5))
    assert _state(node, uid) is S.WAITING


def test_edit_before_release_goes_back_to_waiting_room_in_place(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, license="CC0-1.0")
    process(node)
    new_uid, state, _ = node.edit(member, uid, EditRequest(license=License.CC_BY, note="fixed"), uuid7())
    assert (new_uid, state) == (uid, S.WAITING)
    process(node)
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None and detail.record is not None
    assert detail.record.license == "CC-BY-4.0"
    assert detail.record.note == "fixed"


def test_edit_after_release_makes_new_record_and_tombstones_old(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, label="good")
    process(node)
    node.cut_release()
    new_uid, state, _ = node.edit(member, uid, EditRequest(label=Label.FAIL), uuid7())
    assert new_uid != uid and state is S.WAITING
    old = node.store.read(lambda c: contrib.get_contribution(c, uid))
    new = node.store.read(lambda c: contrib.get_contribution(c, new_uid))
    assert old is not None and new is not None
    assert old.view.state is S.WITHDRAWN and old.view.superseded_by == new_uid
    assert new.view.supersedes == uid and new.view.label == "fail"
    reason = node.store.read(
        lambda c: c.execute("SELECT reason FROM tombstones WHERE uid = ?", (uid,)).fetchone()
    )
    assert reason == ("rectified",)
    process(node)
    assert _state(node, new_uid) is S.ACCEPTED  # not a duplicate of the withdrawn original


def test_edit_withdrawn_contribution_is_refused(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    node.store.write(lambda c: rights.withdraw_contribution(c, uid=uid, member=member, now=5))
    with pytest.raises(StateError):
        node.edit(member, uid, EditRequest(label=Label.FAIL), uuid7())


def _quarantined(node: Node) -> str:
    member, _ = make_member(node)
    emails = " ".join(f"p{i}@example.com" for i in range(7))
    uid = contribute(node, member, text=f"User: mail {emails}\nAssistant: noted")
    process(node)
    assert _state(node, uid) is S.QUARANTINED
    return uid


def test_decide_quarantine_release_accepts_redacted_record(node: Node) -> None:
    uid = _quarantined(node)
    assert node.decide_quarantine(uid, Decision.RELEASE, admin="ada") is S.ACCEPTED
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None and detail.record is not None
    assert "@example.com" not in detail.record.content[0].content
    assert detail.view.decided_by == "ada"


def test_decide_quarantine_reject_erases_content(node: Node) -> None:
    uid = _quarantined(node)
    assert node.decide_quarantine(uid, Decision.REJECT, admin="ada") is S.REJECTED
    detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
    assert detail is not None and detail.submission is None


def test_decide_quarantine_on_accepted_item_is_refused(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member)
    process(node)
    with pytest.raises(StateError):
        node.decide_quarantine(uid, Decision.REJECT, admin="ada")
