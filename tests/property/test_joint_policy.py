"""Joint actions in the policy: they only ever remove disclosures, select as embargoes do, and
the book's rules equal a naive recomputation from who signed and ended what."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.federation.joint import (
    JointAction,
    JointBook,
    JointKind,
    JointRules,
    JointSelector,
    JointStatement,
    MemoryJointStore,
    make_action,
    make_statement,
)
from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    License,
    RecordFacts,
    RecordState,
    Scope,
    admit,
    disclose,
)
from coop.governance.signing import Signer

TAGS = ["tax", "Tax", "health", "law"]
LANGUAGES = ["en", "EN-gb", "de", "de-AT", "id", "id-ID", "fr"]
NOW = 1_700_000_000
DAY = 86_400

selectors = st.builds(
    JointSelector,
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(LANGUAGES), max_size=2, unique=True).map(tuple),
    licenses=st.lists(st.sampled_from(list(License)), max_size=2, unique=True).map(tuple),
)
joint_rules = st.builds(
    JointRules,
    freeze=st.booleans(),
    embargoes=st.lists(selectors, max_size=2).map(tuple),
    eval_only_since=st.one_of(st.none(), st.integers(NOW - 10, NOW + 10)),
    ai_use=st.one_of(st.none(), st.just("train-ai=n")),
    monthly_records=st.one_of(st.none(), st.integers(0, 5)),
)
states = st.builds(
    CollectiveState,
    embargo=st.builds(
        Embargo,
        on=st.booleans(),
        tags=st.lists(st.sampled_from(TAGS), max_size=1).map(tuple),
        languages=st.lists(st.sampled_from(["en", "de"]), max_size=1).map(tuple),
    ),
    quality_freeze=st.booleans(),
    forked=st.booleans(),
    federation=st.one_of(st.none(), st.just(frozenset({"p" * 64}))),
)
facts = st.builds(
    RecordFacts,
    uid=st.just("u"),
    scope=st.sampled_from(list(Scope)),
    license=st.sampled_from(list(License)),
    ai_use=st.just("train-ai=y"),
    eval=st.sampled_from(list(EvalConsent)),
    attribution=st.sampled_from(list(AttributionMode)),
    state=st.sampled_from(list(RecordState)),
    admitted=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=2).map(tuple),
    language=st.one_of(st.none(), st.sampled_from(LANGUAGES)),
    origin=st.one_of(st.none(), st.just("p" * 64)),
    created_at=st.one_of(st.none(), st.integers(NOW - 20, NOW + 20)),
)


@settings(max_examples=400, deadline=None)
@given(
    record=facts,
    state=states,
    rules=joint_rules,
    audience=st.sampled_from(list(Audience)),
    snap=st.booleans(),
)
def test_joint_rules_only_remove_disclosures(
    record: RecordFacts, state: CollectiveState, rules: JointRules, audience: Audience, snap: bool
) -> None:
    joint = msgspec.structs.replace(state, joint=rules)
    with_joint = disclose(record, joint, audience, requester="p" * 64, snapshot=snap)
    without = disclose(record, state, audience, requester="p" * 64, snapshot=snap)
    if with_joint:
        assert with_joint == without
    if admit(record, joint):
        assert admit(record, joint) == admit(record, state)
    if snap and audience in (Audience.PUBLIC,) and record.origin is None:
        assert with_joint == without  # a joint action cannot undo past licences


@settings(max_examples=400, deadline=None)
@given(
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(LANGUAGES), max_size=2, unique=True).map(tuple),
    record_tags=st.lists(st.sampled_from(TAGS), max_size=3).map(tuple),
    language=st.one_of(st.none(), st.sampled_from(LANGUAGES)),
    licence=st.one_of(st.none(), st.sampled_from(list(License))),
)
def test_selector_covers_as_the_embargo_does(
    tags: tuple[str, ...],
    languages: tuple[str, ...],
    record_tags: tuple[str, ...],
    language: str | None,
    licence: License | None,
) -> None:
    selector = JointSelector(tags=tags, languages=languages)
    embargo = Embargo(on=True, tags=tags, languages=languages)
    assert selector.covers(tags=record_tags, language=language, license=licence) == embargo.covers(
        tags=record_tags, language=language
    )
    with_licence = JointSelector(tags=tags, languages=languages, licenses=(License.CC0,))
    assert with_licence.covers(tags=record_tags, language=language, license=licence) == (
        licence is License.CC0
        or (bool(tags or languages) and selector.covers(tags=record_tags, language=language, license=None))
    )


SIGNERS = [Signer(bytes([i + 51]) * 32) for i in range(4)]
BY_ID = {s.public_key.hex(): s for s in SIGNERS}
COOPS = tuple(sorted(BY_ID))
KINDS = list(JointKind)


@st.composite
def scenarios(draw: st.DrawFn) -> list[dict[str, object]]:
    out = []
    for nonce in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        coops = tuple(sorted(draw(st.lists(st.sampled_from(COOPS), min_size=1, max_size=4, unique=True))))
        starts = NOW + draw(st.integers(0, 10)) * DAY
        ends = draw(st.one_of(st.none(), st.integers(30, 100)))  # after the intake clock below
        threshold = draw(st.integers(1, len(coops)))
        # Around k signers: some actions miss k by one, most reach it.
        signers = draw(st.lists(st.sampled_from(coops), unique=True, min_size=threshold - 1))
        out.append(
            {
                "action": JointAction(
                    proposer=coops[0],
                    kind=kind,
                    selector=draw(selectors) if kind is JointKind.EMBARGO else JointSelector(),
                    ai_use=draw(st.sampled_from(["train-ai=n", "search=n"]))
                    if kind is JointKind.PREFERENCE
                    else None,
                    monthly_records=draw(st.integers(0, 9)) if kind is JointKind.VOLUME_CAP else None,
                    reason="r",
                    starts_at=starts,
                    ends_at=None if ends is None else starts + ends * DAY,
                    review_at=starts + 50 * DAY if ends is None else None,
                    threshold=threshold,
                    coops=coops,
                    created_at=NOW,
                    nonce=f"{nonce:032x}",
                ),
                "signs": {c: NOW + draw(st.integers(0, 29 * DAY)) for c in signers},
                "ends": {
                    c: NOW + draw(st.integers(0, 29 * DAY))
                    for c in draw(st.lists(st.sampled_from(signers or [""]), unique=True))
                    if c
                },
            }
        )
    return out


def naive_rules(items: list[dict[str, object]], ids: list[str], now: int) -> dict[str, JointRules]:
    bound: dict[str, list[tuple[str, JointAction]]] = {}
    for action_id, item in zip(ids, items, strict=True):
        action, signs, ends = item["action"], item["signs"], item["ends"]
        assert isinstance(action, JointAction) and isinstance(signs, dict) and isinstance(ends, dict)
        k = action.threshold
        # Times dated after `now` count, at `now`; the proposer's end before k signed withdraws it;
        # after the review date a signer that signed an end has left (k must remain).
        reached = sorted(min(t, now) for t in signs.values())[k - 1] if len(signs) >= k else None
        withdrawn = (
            action.proposer in ends and reached is not None and min(ends[action.proposer], now) < reached
        )
        left = set(ends) if action.review_at is not None and now >= action.review_at else set()
        remaining = [c for c in signs if c not in left]
        effective = reached is not None and len(ends) < k and not withdrawn and len(remaining) >= k
        started = action.starts_at <= now and (action.ends_at is None or now < action.ends_at)
        if effective and started:
            for coop in remaining:
                bound.setdefault(coop, []).append((action_id, action))
    out = {}
    for coop, pairs in bound.items():
        pairs.sort()
        acts = [a for _, a in pairs]
        evals = [a.starts_at for a in acts if a.kind is JointKind.EVAL_ONLY]
        prefs = [a.ai_use for a in acts if a.kind is JointKind.PREFERENCE]
        caps = [
            a.monthly_records
            for a in acts
            if a.kind is JointKind.VOLUME_CAP and a.monthly_records is not None
        ]
        out[coop] = JointRules(
            freeze=any(a.kind is JointKind.FREEZE for a in acts),
            embargoes=tuple(a.selector for a in acts if a.kind is JointKind.EMBARGO),
            eval_only_since=min(evals) if evals else None,
            ai_use=prefs[0] if prefs else None,
            monthly_records=min(caps) if caps else None,
            actions=tuple(i for i, _ in pairs),
        )
    return out


@settings(max_examples=100, deadline=None)
@given(items=scenarios(), now=st.integers(NOW, NOW + 120 * DAY))
def test_book_rules_match_a_naive_recomputation(items: list[dict[str, object]], now: int) -> None:
    keys = {c: c for c in COOPS}
    book = JointBook(MemoryJointStore(), keys=lambda: keys, clock=lambda: NOW + 29 * DAY)
    ids = []
    for item in items:
        action = item["action"]
        assert isinstance(action, JointAction)
        ids.append(book.offer_action(make_action(action, BY_ID[action.proposer])).id)
    for decision in ("signs", "ends"):
        for action_id, item in zip(ids, items, strict=True):
            held = item[decision]
            assert isinstance(held, dict)
            for coop, at in held.items():
                statement = JointStatement(
                    action=action_id,
                    coop=coop,
                    decision=decision[:-1],  # type: ignore[arg-type]
                    at=at,
                    via="admin",
                )
                book.offer_statement(make_statement(statement, BY_ID[coop]))
    assert book.rules(now=now) == naive_rules(items, ids, now)


@settings(max_examples=400, deadline=None)
@given(
    embargoes=st.lists(selectors, max_size=4).map(tuple),
    tags=st.lists(st.sampled_from([*TAGS, "TAX", "other"]), max_size=3).map(tuple),
    language=st.one_of(st.none(), st.sampled_from([*LANGUAGES, "EN", "en-GB", "xx"])),
    license=st.one_of(st.none(), st.sampled_from(list(License))),
)
def test_rules_cover_exactly_what_one_of_their_selectors_covers(
    embargoes: tuple[JointSelector, ...],
    tags: tuple[str, ...],
    language: str | None,
    license: License | None,
) -> None:
    # The rules fold their selectors into one union, cached per set of embargoes: the same answer.
    rules = JointRules(embargoes=embargoes)
    expected = any(s.covers(tags=tags, language=language, license=license) for s in embargoes)
    assert rules.covers(tags=tags, language=language, license=license) is expected
    assert rules.covers(tags=tags, language=language, license=license) is expected  # cached
