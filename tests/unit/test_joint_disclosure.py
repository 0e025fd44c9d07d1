"""The disclosure policy under joint actions: a table of named cases per audience."""

from __future__ import annotations

import pytest

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    EvalConsent,
    Form,
    JointRules,
    JointSelector,
    License,
    Reason,
    RecordFacts,
    RecordState,
    Scope,
    admit,
    disclose,
)

START = 1_700_000_000
RECORD = RecordFacts(
    uid="u1",
    scope=Scope.PUBLIC,
    license=License.CC_BY,
    ai_use="train-ai=y",
    eval=EvalConsent.YES,
    attribution=AttributionMode.ANONYMOUS,
    state=RecordState.RELEASED,
    admitted=True,
    tags=("tax",),
    language="id-ID",
    created_at=START + 10,
)
FREEZE = JointRules(freeze=True, actions=("a",))
BY_LICENCE = JointRules(embargoes=(JointSelector(licenses=(License.CC_BY,)),))
BY_LANGUAGE = JointRules(embargoes=(JointSelector(languages=("id",)),))
OTHER_TAG = JointRules(embargoes=(JointSelector(tags=("law",)),))
EVAL_ONLY = JointRules(eval_only_since=START)
LATER_EVAL_ONLY = JointRules(eval_only_since=START + 11)
PREFERENCE = JointRules(ai_use="train-ai=n", monthly_records=3)

CASES = [
    # (name, rules, audience, snapshot, reason)
    ("freeze-peer", FREEZE, Audience.PEER, False, Reason.JOINT_FREEZE),
    ("freeze-federated", FREEZE, Audience.FEDERATED, False, Reason.JOINT_FREEZE),
    # A joint freeze is held to what the co-op's own quality freeze does: it stops flows and
    # cuts, not the co-op's own pages showing what it already released (a joint embargo and
    # eval-only do hide records there, as its own embargo does).
    ("freeze-own-pages-stay", FREEZE, Audience.PUBLIC, False, Reason.ALLOWED),
    ("freeze-eval", FREEZE, Audience.EVAL, False, Reason.JOINT_FREEZE),
    ("freeze-snapshot-stays", FREEZE, Audience.PUBLIC, True, Reason.ALLOWED),
    ("licence-embargo-peer", BY_LICENCE, Audience.PEER, False, Reason.JOINT_EMBARGO),
    ("language-embargo-own-pages", BY_LANGUAGE, Audience.PUBLIC, False, Reason.JOINT_EMBARGO),
    ("language-embargo-eval", BY_LANGUAGE, Audience.EVAL, False, Reason.JOINT_EMBARGO),
    ("other-tag-passes", OTHER_TAG, Audience.PEER, False, Reason.ALLOWED),
    ("eval-only-peer", EVAL_ONLY, Audience.PEER, False, Reason.EVAL_ONLY),
    ("eval-only-own-pages", EVAL_ONLY, Audience.PUBLIC, False, Reason.EVAL_ONLY),
    ("eval-only-eval-allowed", EVAL_ONLY, Audience.EVAL, False, Reason.ALLOWED),
    ("eval-only-snapshot-stays", EVAL_ONLY, Audience.PUBLIC, True, Reason.ALLOWED),
    ("eval-only-older-record-passes", LATER_EVAL_ONLY, Audience.PEER, False, Reason.ALLOWED),
    ("preference-and-cap-hold-nothing-here", PREFERENCE, Audience.PEER, False, Reason.ALLOWED),
    ("admins-still-see", FREEZE, Audience.ADMIN, False, Reason.ALLOWED),
]


@pytest.mark.parametrize(
    ("rules", "audience", "snapshot", "reason"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_disclose_under_joint_rules(
    rules: JointRules, audience: Audience, snapshot: bool, reason: Reason
) -> None:
    got = disclose(RECORD, CollectiveState(joint=rules), audience, snapshot=snapshot)
    assert got.reason is reason
    assert bool(got) is (reason is Reason.ALLOWED)


def test_eval_only_unknown_creation_time_is_held() -> None:
    record = RecordFacts(**{**{f: getattr(RECORD, f) for f in RECORD.__struct_fields__}, "created_at": None})
    assert disclose(record, CollectiveState(joint=LATER_EVAL_ONLY), Audience.PEER).reason is Reason.EVAL_ONLY


@pytest.mark.parametrize(
    ("rules", "reason"),
    [(FREEZE, Reason.JOINT_FREEZE), (BY_LICENCE, Reason.JOINT_EMBARGO), (EVAL_ONLY, Reason.EVAL_ONLY)],
)
def test_admit_refuses_what_a_joint_action_holds(rules: JointRules, reason: Reason) -> None:
    assert admit(RECORD, CollectiveState()).form is Form.RECORD
    assert admit(RECORD, CollectiveState(joint=rules)).reason is reason


def test_mirrored_record_follows_its_origins_joint_rules() -> None:
    mirror = RecordFacts(**{**{f: getattr(RECORD, f) for f in RECORD.__struct_fields__}, "origin": "b" * 64})
    assert disclose(mirror, CollectiveState(joint=BY_LICENCE), Audience.PUBLIC).reason is Reason.JOINT_EMBARGO
    assert disclose(mirror, CollectiveState(), Audience.PUBLIC)


def test_joint_rules_truthiness() -> None:
    assert not JointRules() and not JointRules(actions=("a",))
    assert all((FREEZE, BY_LICENCE, EVAL_ONLY, PREFERENCE, JointRules(monthly_records=0)))


def test_joint_freeze_on_own_pages_matches_the_own_quality_freeze() -> None:
    own = disclose(RECORD, CollectiveState(quality_freeze=True), Audience.PUBLIC)
    joint = disclose(RECORD, CollectiveState(joint=FREEZE), Audience.PUBLIC)
    assert own == joint and own.reason is Reason.ALLOWED
    # Beyond the node (a federated release) both hold the record.
    assert disclose(RECORD, CollectiveState(quality_freeze=True), Audience.FEDERATED).reason is (
        Reason.QUALITY_FREEZE
    )
    mirror = RecordFacts(**{**{f: getattr(RECORD, f) for f in RECORD.__struct_fields__}, "origin": "b" * 64})
    assert disclose(mirror, CollectiveState(joint=FREEZE), Audience.PUBLIC).reason is Reason.JOINT_FREEZE
