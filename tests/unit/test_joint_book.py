"""The joint book: k of n binds the signers only; ends, expiry, lapse, limits and gossip."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from coop.federation.joint import (
    LAPSE,
    ActionStatus,
    JointAction,
    JointBook,
    JointDigest,
    JointError,
    JointKind,
    JointRules,
    JointSelector,
    JointStatement,
    MemoryJointStore,
    make_action,
    make_statement,
)
from coop.federation.joint import book as book_module
from coop.governance.envelope import pae
from coop.governance.signing import Signer

SIGNERS = [Signer(bytes([i + 31]) * 32) for i in range(4)]
IDS = [s.public_key.hex() for s in SIGNERS]
BY_ID = dict(zip(IDS, SIGNERS, strict=True))
COOPS = tuple(sorted(IDS[:3]))
KEYS = {i: i for i in IDS}
NOW = 1_700_000_000
DAY = 86_400


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def book(clock: Clock | None = None) -> tuple[JointBook, Clock]:
    clock = clock or Clock()
    return JointBook(MemoryJointStore(), keys=lambda: KEYS, clock=clock), clock


def action_bytes(proposer: str = COOPS[0], nonce: int = 0, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "proposer": proposer,
        "kind": JointKind.EMBARGO,
        "selector": JointSelector(tags=("tax",)),
        "reason": "Fair terms first",
        "starts_at": NOW,
        "ends_at": NOW + 60 * DAY,
        "threshold": 2,
        "coops": COOPS,
        "created_at": NOW,
        "nonce": f"{nonce:032x}",
    }
    fields.update(changes)
    return make_action(JointAction(**fields), BY_ID[proposer])  # type: ignore[arg-type]


def stmt(action_id: str, coop: str, decision: str = "sign", at: int = NOW, via: str = "admin") -> bytes:
    statement = JointStatement(action=action_id, coop=coop, decision=decision, at=at, via=via)  # type: ignore[arg-type]
    return make_statement(statement, BY_ID[coop])


def test_one_of_two_signatures_does_not_bind() -> None:
    joint, _ = book()
    opened = joint.offer_action(action_bytes())
    joint.offer_statement(stmt(opened.id, COOPS[0]))
    assert joint.view(opened.id).status is ActionStatus.PENDING
    assert joint.rules() == {}


def test_k_signatures_bind_the_signers_only() -> None:
    joint, clock = book()
    opened = joint.offer_action(action_bytes())
    joint.offer_statement(stmt(opened.id, COOPS[0]))
    clock.now = NOW + 10
    joint.offer_statement(stmt(opened.id, COOPS[1], at=NOW + 5, via="vote 3"))
    view = joint.view(opened.id)
    assert view.status is ActionStatus.ACTIVE and view.effective_since == NOW + 5
    assert view.signers == ((COOPS[0], NOW, "admin"), (COOPS[1], NOW + 5, "vote 3"))
    assert view.binds(COOPS[0]) and not view.binds(COOPS[2])
    rules = joint.rules()
    assert set(rules) == {COOPS[0], COOPS[1]}
    assert rules[COOPS[0]] == JointRules(embargoes=(JointSelector(tags=("tax",)),), actions=(opened.id,))
    assert rules[COOPS[0]].covers(tags=("Tax",), language=None, license=None)


def test_scheduled_then_active_then_expired() -> None:
    joint, clock = book()
    opened = joint.offer_action(action_bytes(starts_at=NOW + DAY, ends_at=NOW + 2 * DAY))
    for coop in COOPS[:2]:
        joint.offer_statement(stmt(opened.id, coop))
    assert joint.view(opened.id).status is ActionStatus.SCHEDULED and joint.rules() == {}
    clock.now = NOW + DAY
    assert joint.view(opened.id).status is ActionStatus.ACTIVE and joint.rules()
    clock.now = NOW + 2 * DAY
    view = joint.view(opened.id)
    assert view.status is ActionStatus.EXPIRED and view.ended_at == NOW + 2 * DAY
    assert joint.rules() == {}
    with pytest.raises(JointError) as err:
        joint.offer_statement(stmt(opened.id, COOPS[2], at=clock.now))
    assert err.value.field == "action"


def test_end_by_a_non_signer_refused_and_k_signers_end_it() -> None:
    joint, _ = book(Clock(NOW + 30))
    opened = joint.offer_action(action_bytes())
    for coop in COOPS[:2]:
        joint.offer_statement(stmt(opened.id, coop))
    with pytest.raises(JointError) as err:
        joint.offer_statement(stmt(opened.id, COOPS[2], "end"))
    assert err.value.field == "coop"
    joint.offer_statement(stmt(opened.id, COOPS[0], "end", at=NOW + 10))
    assert joint.view(opened.id).status is ActionStatus.ACTIVE
    joint.offer_statement(stmt(opened.id, COOPS[1], "end", at=NOW + 20))
    view = joint.view(opened.id)
    assert view.status is ActionStatus.ENDED and view.ended_at == NOW + 20
    assert joint.rules() == {}
    with pytest.raises(JointError) as err:
        joint.offer_statement(stmt(opened.id, COOPS[2]))
    assert err.value.field == "action"


def test_pending_action_lapses_after_30_days() -> None:
    joint, clock = book()
    opened = joint.offer_action(action_bytes())
    joint.offer_statement(stmt(opened.id, COOPS[0]))
    clock.now = NOW + LAPSE
    assert joint.view(opened.id).status is ActionStatus.LAPSED
    with pytest.raises(JointError):
        joint.offer_statement(stmt(opened.id, COOPS[1], at=clock.now))


def test_replayed_action_and_statement_are_kept_once() -> None:
    joint, _ = book()
    data = action_bytes()
    opened = joint.offer_action(data)
    sign = stmt(opened.id, COOPS[0])
    joint.offer_statement(sign)
    receipt = joint.receive([data], [sign, sign])
    assert (receipt.actions, receipt.statements, receipt.known, receipt.refused) == (0, 0, 3, ())
    assert len(joint.store.actions()) == 1 and len(joint.store.statements()) == 1
    # A second signature of the same decision by the same co-op: the first is kept.
    joint.offer_statement(stmt(opened.id, COOPS[0], at=NOW + 99))
    assert joint.view(opened.id).signers == ((COOPS[0], NOW, "admin"),)


def test_statement_for_unknown_action_refused_until_the_action_comes() -> None:
    joint, _ = book()
    data = action_bytes()
    other, _ = book()
    action_id = other.offer_action(data).id
    sign = stmt(action_id, COOPS[0])
    receipt = joint.receive([], [sign])
    assert receipt.statements == 0 and receipt.refused[0].startswith("action:")
    assert joint.digest().refused == ()  # may come again
    receipt = joint.receive([data], [sign])
    assert (receipt.actions, receipt.statements) == (1, 1)


def test_fifth_pending_action_of_one_proposer_refused() -> None:
    joint, _ = book()
    for nonce in range(4):
        joint.offer_action(action_bytes(nonce=nonce))
    with pytest.raises(JointError) as err:
        joint.offer_action(action_bytes(nonce=4))
    assert err.value.field == "proposer"
    assert "lapses on 2023-12-14" in err.value.message and "`coop joint end` withdraws" in err.value.message
    joint.offer_action(action_bytes(proposer=COOPS[1], nonce=4))  # another co-op's quota


def test_forged_item_refused_alone_and_advertised() -> None:
    joint, _ = book()
    good = action_bytes()
    forged = make_action(_forged_action(), SIGNERS[3])
    receipt = joint.receive([forged, good], [])
    assert receipt.actions == 1 and len(receipt.refused) == 1 and receipt.refused[0].startswith("signature:")
    assert joint.digest().refused == ()  # a signature says nothing of the payload: never for good
    expired = action_bytes(nonce=8, ends_at=NOW + DAY)
    later, _ = book(Clock(NOW + DAY))
    assert later.receive([expired], []).refused[0].startswith("ends_at:")
    assert len(later.digest().refused) == 1  # expired holds for every envelope of the payload
    sender, _ = book()
    sender.offer_action(forged_ok := action_bytes(nonce=9))
    assert sender.items_for(JointDigest(refused=(sender.digest().actions[0],)))[0] == []
    assert sender.items_for(JointDigest())[0] == [forged_ok]


def _forged_action() -> JointAction:
    return JointAction(
        proposer=COOPS[0],
        kind=JointKind.FREEZE,
        reason="forged",
        starts_at=NOW,
        ends_at=NOW + DAY,
        threshold=1,
        coops=COOPS,
        created_at=NOW,
        nonce="f" * 32,
    )


def test_gossip_converges_between_two_books() -> None:
    first, _ = book()
    second, _ = book()
    opened = first.offer_action(action_bytes())
    for coop in COOPS[:2]:
        first.offer_statement(stmt(opened.id, coop))
    first.offer_statement(stmt(opened.id, COOPS[0], "end"))
    actions, statements = first.items_for(second.digest())
    assert len(actions) == 1 and len(statements) == 3
    # Ends listed first must still count: the receiver takes signs before ends.
    receipt = second.receive(actions, list(reversed(statements)))
    assert (receipt.actions, receipt.statements, receipt.refused) == (1, 3, ())
    assert first.digest() == second.digest()
    assert first.items_for(second.digest()) == ([], [])
    assert second.rules() == first.rules()


def test_expired_actions_are_not_offered_to_peers() -> None:
    joint, clock = book()
    joint.offer_action(action_bytes(ends_at=NOW + DAY))
    clock.now = NOW + DAY
    assert joint.items_for(JointDigest()) == ([], [])
    assert len(joint.views()) == 1  # still shown as past


def test_view_by_unique_prefix() -> None:
    joint, _ = book()
    opened = joint.offer_action(action_bytes())
    assert joint.view(opened.id[:8]).id == opened.id
    for bad in (opened.id[:7], "0" * 64):
        with pytest.raises(KeyError):
            joint.view(bad)


def test_rules_combine_kinds_per_coop() -> None:
    joint, _ = book()
    plain: dict[str, Any] = {"selector": JointSelector(), "threshold": 1}
    made = [
        action_bytes(nonce=1, kind=JointKind.FREEZE, **plain),
        action_bytes(nonce=2, kind=JointKind.EVAL_ONLY, starts_at=NOW + 5, **plain),
        action_bytes(nonce=3, kind=JointKind.EVAL_ONLY, **plain),
        action_bytes(nonce=4, kind=JointKind.PREFERENCE, ai_use="train-ai=n", **plain),
        action_bytes(proposer=COOPS[1], nonce=5, kind=JointKind.VOLUME_CAP, monthly_records=50, **plain),
        action_bytes(proposer=COOPS[1], nonce=6, kind=JointKind.VOLUME_CAP, monthly_records=20, **plain),
    ]
    ids = []
    for data in made:
        ids.append(joint.offer_action(data).id)
        joint.offer_statement(stmt(ids[-1], COOPS[0]))
    rules = joint.rules(now=NOW + 10)[COOPS[0]]
    assert rules.freeze and rules.eval_only_since == NOW and rules.ai_use == "train-ai=n"
    assert rules.monthly_records == 20 and rules.actions == tuple(sorted(ids))
    assert set(joint.rules(now=NOW + 10)) == {COOPS[0]}


def test_reload_reads_what_another_writer_stored() -> None:
    store = MemoryJointStore()
    first = JointBook(store, keys=lambda: KEYS, clock=Clock())
    second = JointBook(store, keys=lambda: KEYS, clock=Clock())
    opened = first.offer_action(action_bytes())
    first.offer_statement(stmt(opened.id, COOPS[0]))
    assert [v.id for v in second.views()] == [opened.id]
    assert second.view(opened.id).signers[0][0] == COOPS[0]


# -- issue 15 review: a hostile peer and the user ----------------------------------------------


def _resigned(data: bytes, signer: Signer) -> bytes:
    """The same payload in an envelope a relay signed with its own key."""
    envelope = json.loads(data)
    message = pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))
    sig = base64.b64encode(signer.sign(message)).decode()
    envelope["signatures"] = [{"keyid": signer.public_key.hex(), "sig": sig}]
    return json.dumps(envelope, separators=(",", ":")).encode()


def test_a_resigned_copy_never_poisons_the_real_document() -> None:
    joint, _ = book()
    data = action_bytes()
    assert joint.receive([_resigned(data, SIGNERS[3])], []).refused[0].startswith("signature:")
    assert joint.digest().refused == ()
    assert joint.receive([data], []).actions == 1
    aid = action_id_of(data)
    signs = [stmt(aid, c) for c in COOPS[:2]]
    joint.receive([], signs)
    end = stmt(aid, COOPS[0], "end")
    assert joint.receive([], [_resigned(end, SIGNERS[3])]).statements == 0
    assert joint.digest().refused == ()
    assert joint.receive([], [end]).statements == 1


def test_an_unknown_proposer_key_is_retried_not_refused_for_good() -> None:
    keys: dict[str, str] = {}
    joint = JointBook(MemoryJointStore(), keys=lambda: keys, clock=Clock())
    data = action_bytes()
    assert joint.receive([data], []).actions == 0 and joint.digest().refused == ()
    keys.update(KEYS)  # the roster arrives
    assert joint.receive([data], []).actions == 1


def action_id_of(data: bytes) -> str:
    return JointBook(MemoryJointStore(), keys=lambda: KEYS, clock=Clock()).offer_action(data).id


def test_receiving_adds_incrementally_without_decoding_the_book_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signers = [Signer(bytes([i + 1, 7]) * 16) for i in range(16)]
    keys = {s.public_key.hex(): s.public_key.hex() for s in signers}
    joint = JointBook(MemoryJointStore(), keys=lambda: keys, clock=Clock())
    batch = [
        make_action(
            JointAction(
                proposer=s.public_key.hex(),
                kind=JointKind.FREEZE,
                reason="r",
                starts_at=NOW,
                ends_at=NOW + DAY,
                threshold=1,
                coops=(s.public_key.hex(),),
                created_at=NOW,
                nonce=f"{n:032x}",
            ),
            s,
        )
        for s in signers
        for n in range(4)
    ]
    calls = []
    real = book_module.decode_action
    monkeypatch.setattr(book_module, "decode_action", lambda data: calls.append(1) or real(data))
    assert joint.receive(batch[:32], []).actions == 32
    assert joint.receive(batch[32:], []).actions == 32
    assert len(calls) <= 64 + 2  # once per action received (before: the whole book per action added)
    joint.views()  # re-reading the store decodes nothing seen before
    assert len(calls) <= 64 + 2


def test_future_made_and_already_lapsed_actions_refused() -> None:
    joint, _ = book()
    future = action_bytes(created_at=NOW + 2 * DAY, starts_at=NOW + 2 * DAY, ends_at=NOW + 9 * DAY)
    assert joint.receive([future], []).refused[0].startswith("created_at:")
    old = dict(created_at=NOW - LAPSE, starts_at=NOW - LAPSE, ends_at=NOW + DAY)
    lapsed = action_bytes(nonce=1, **old)  # type: ignore[arg-type]
    assert joint.receive([lapsed], []).refused[0].startswith("created_at:")
    assert joint.digest() == JointDigest()  # nothing kept, nothing refused for good
    # With k signs made in time in the same message it comes in (it is in force).
    aid = action_id_of_at(lapsed, NOW - LAPSE)
    signs = [stmt(aid, c, at=NOW - LAPSE + 5) for c in COOPS[:2]]
    receipt = joint.receive([lapsed], signs)
    assert (receipt.actions, receipt.statements) == (1, 2) and joint.view(aid).status is ActionStatus.ACTIVE
    # Signs that do not verify: the action is dropped again.
    other = action_bytes(nonce=2, **old)  # type: ignore[arg-type]
    oid = action_id_of_at(other, NOW - LAPSE)
    forged = [_resigned(stmt(oid, c, at=NOW - LAPSE + 5), SIGNERS[3]) for c in COOPS[:2]]
    assert joint.receive([other], forged).actions == 0
    assert oid not in joint.digest().actions


def action_id_of_at(data: bytes, when: int) -> str:
    return JointBook(MemoryJointStore(), keys=lambda: KEYS, clock=Clock(when)).offer_action(data).id


def test_limits_count_only_live_actions_and_past_ones_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "MAX_ACTIONS", 2)
    joint, clock = book()
    first = joint.offer_action(action_bytes(nonce=1, threshold=1))
    second = joint.offer_action(action_bytes(nonce=2, threshold=1, ends_at=NOW + 2 * DAY))
    with pytest.raises(JointError):
        joint.offer_action(action_bytes(nonce=3, created_at=NOW + 1))
    joint.offer_statement(stmt(second.id, COOPS[0]))
    joint.offer_statement(stmt(first.id, COOPS[0], "end", at=NOW + 1))  # first withdrawn
    clock.now = NOW + 2 * DAY  # second expired: both past, two live slots free
    joint.offer_action(action_bytes(nonce=3, created_at=clock.now, starts_at=clock.now))
    assert {v.status for v in joint.views()} == {
        ActionStatus.WITHDRAWN,
        ActionStatus.EXPIRED,
        ActionStatus.PENDING,
    }
    clock.now = NOW + 1 + 7 * DAY  # the withdrawn one is forgotten 7 days after
    joint.offer_action(action_bytes(nonce=4, created_at=clock.now, starts_at=clock.now))
    assert first.id not in joint.digest().actions and second.id in joint.digest().actions
    assert len(joint.store.statements()) == 1  # its statements went with it
    clock.now = NOW + 2 * DAY + 400 * DAY  # the expired one is shown 400 days, then forgotten
    assert second.id in joint.prune() and second.id not in joint.digest().actions


def test_a_proposer_keeps_at_most_32_live_actions() -> None:
    joint, _ = book()
    for nonce in range(32):
        opened = joint.offer_action(action_bytes(nonce=nonce, threshold=1))
        joint.offer_statement(stmt(opened.id, COOPS[0]))  # active: not pending
    with pytest.raises(JointError) as err:
        joint.offer_action(action_bytes(nonce=99, threshold=1))
    assert err.value.field == "proposer" and "32" in err.value.message


def test_past_actions_are_not_forwarded() -> None:
    joint, _ = book()
    opened = joint.offer_action(action_bytes(threshold=1))
    joint.offer_statement(stmt(opened.id, COOPS[0]))
    assert len(joint.items_for(JointDigest())[0]) == 1
    joint.offer_statement(stmt(opened.id, COOPS[0], "end"))
    assert joint.view(opened.id).status is ActionStatus.ENDED
    assert joint.items_for(JointDigest())[0] == []
    # A peer holding it still gets the end that ended it.
    assert len(joint.items_for(JointDigest(actions=(opened.id,)))[1]) == 2


def test_after_the_review_date_signers_leave_one_by_one() -> None:
    joint, clock = book()
    opened = joint.offer_action(action_bytes(ends_at=None, review_at=NOW + 10 * DAY, threshold=2))
    for coop in COOPS:
        joint.offer_statement(stmt(opened.id, coop))
    joint.offer_statement(stmt(opened.id, COOPS[0], "end", at=NOW + DAY))  # before the review: bound
    assert set(joint.rules(now=NOW + 2 * DAY)) == set(COOPS)
    clock.now = NOW + 10 * DAY  # the review date: COOPS[0] leaves, two remain
    view = joint.view(opened.id)
    assert view.status is ActionStatus.ACTIVE and view.left == (COOPS[0],) and not view.binds(COOPS[0])
    assert set(joint.rules()) == {COOPS[1], COOPS[2]}
    clock.now = NOW + 11 * DAY
    joint.offer_statement(stmt(opened.id, COOPS[1], "end", at=clock.now))
    view = joint.view(opened.id)  # fewer than k remain (and k signers signed an end)
    assert view.status is ActionStatus.ENDED and view.ended_at == NOW + 11 * DAY
    assert joint.rules() == {}


def test_one_leaver_ends_it_when_exactly_k_signed() -> None:
    joint, clock = book(Clock(NOW + 100 * DAY))
    data = action_bytes(
        ends_at=None,
        review_at=NOW + 150 * DAY,
        starts_at=NOW + 100 * DAY,
        threshold=2,
        created_at=NOW + 100 * DAY,
    )
    opened = joint.offer_action(data)
    for coop in COOPS[:2]:
        joint.offer_statement(stmt(opened.id, coop, at=clock.now))
    clock.now = NOW + 400 * DAY  # ten years would do too: the review date alone binds no more
    joint.offer_statement(stmt(opened.id, COOPS[0], "end", at=clock.now))
    view = joint.view(opened.id)
    assert view.status is ActionStatus.ENDED and view.ended_at == clock.now and joint.rules() == {}


def test_the_proposer_withdraws_a_pending_action() -> None:
    joint, _ = book()
    ids = [joint.offer_action(action_bytes(nonce=n)).id for n in range(4)]
    joint.offer_statement(stmt(ids[0], COOPS[0], "end"))  # the proposer, not a signer
    view = joint.view(ids[0])
    assert view.status is ActionStatus.WITHDRAWN and view.status.past and view.ended_at == NOW
    joint.offer_action(action_bytes(nonce=4))  # its pending slot is free
    with pytest.raises(JointError):
        joint.offer_statement(stmt(ids[0], COOPS[1]))
    with pytest.raises(JointError):  # another co-op cannot withdraw it
        joint.offer_statement(stmt(ids[1], COOPS[1], "end"))


def test_statements_dated_ahead_count_at_now() -> None:
    joint, clock = book()
    opened = joint.offer_action(action_bytes(threshold=1))
    joint.offer_statement(stmt(opened.id, COOPS[0], at=NOW + 3600))
    view = joint.view(opened.id)
    assert view.status is ActionStatus.ACTIVE and view.effective_since == NOW
    clock.now = NOW + 7200
    assert joint.view(opened.id).effective_since == NOW + 3600
