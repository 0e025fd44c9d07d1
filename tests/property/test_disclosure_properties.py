"""The disclosure policy's invariants: random records x random collective states x every audience.

These hold the one policy every exit asks (coop.governance.disclosure) to the promises
the co-op makes: node scope stays home, federation scope is never public, nothing
unreleased, embargoed or frozen reaches a peer, withdrawn content goes nowhere,
anonymous records are unlinkable, and ShareAlike never mixes.
"""

from __future__ import annotations

import itertools

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import (
    Attribution,
    AttributionMode,
    Audience,
    Channel,
    Checks,
    CollectiveState,
    Embargo,
    EvalConsent,
    Form,
    Identifier,
    Label,
    License,
    Message,
    Provenance,
    Reason,
    Record,
    RecordFacts,
    RecordState,
    Role,
    Scope,
    Source,
    admit,
    contributor_hash,
    disclose,
    disclose_tombstone,
    pseudonym_hash,
    public_form,
    share_alike_mixed,
)

TAGS = ["tax", "health", "law", "code", "travel"]
LANGUAGES = ["en", "de", "fr", "sw", None]
NODES = [f"{i:064x}" for i in range(1, 6)]
EXTERNAL = [a for a in Audience if a not in (Audience.ADMIN, Audience.MEMBER)]
PEER_OR_PUBLIC = [Audience.PUBLIC, Audience.FEDERATED, Audience.PEER]

embargoes = st.builds(
    Embargo,
    on=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    languages=st.lists(st.sampled_from(["en", "de", "fr"]), max_size=2, unique=True).map(tuple),
)
states = st.builds(
    CollectiveState,
    embargo=embargoes,
    quality_freeze=st.booleans(),
    forked=st.booleans(),
    federation=st.one_of(st.none(), st.frozensets(st.sampled_from(NODES), max_size=4)),
)
facts = st.builds(
    RecordFacts,
    uid=st.uuids().map(str),
    scope=st.sampled_from(list(Scope)),
    license=st.sampled_from(list(License)),
    ai_use=st.sampled_from(["", "train-ai=n", "train-ai=y, search=y", "train-ai=n;exceptions=cc-cr"]),
    eval=st.sampled_from(list(EvalConsent)),
    attribution=st.sampled_from(list(AttributionMode)),
    state=st.sampled_from(list(RecordState)),
    admitted=st.booleans(),
    tags=st.lists(st.sampled_from(TAGS), max_size=3, unique=True).map(tuple),
    language=st.sampled_from(LANGUAGES),
    origin=st.one_of(st.none(), st.sampled_from(NODES)),
)
requesters = st.one_of(st.none(), st.sampled_from(NODES))


@given(facts, states, st.sampled_from(PEER_OR_PUBLIC), requesters)
def test_disclose_node_scope_never_reaches_a_peer_or_the_public(
    record: RecordFacts, state: CollectiveState, audience: Audience, requester: str | None
) -> None:
    if record.scope is Scope.NODE:
        assert not disclose(record, state, audience, requester=requester)
        assert not disclose(record, state, audience, requester=requester, snapshot=True)


@given(facts, states, st.sampled_from([Audience.PUBLIC, Audience.FEDERATED]), st.booleans())
def test_disclose_public_outputs_hold_only_public_scope(
    record: RecordFacts, state: CollectiveState, audience: Audience, snapshot: bool
) -> None:
    if disclose(record, state, audience, snapshot=snapshot):
        assert record.scope is Scope.PUBLIC


@given(facts, states, requesters)
def test_disclose_peer_gets_nothing_embargoed_frozen_forked_or_unreleased(
    record: RecordFacts, state: CollectiveState, requester: str | None
) -> None:
    decision = disclose(record, state, Audience.PEER, requester=requester)
    if decision:
        assert record.admitted
        assert record.state in (RecordState.ACCEPTED, RecordState.RELEASED)
        assert not state.quality_freeze
        assert not state.forked
        assert not state.embargo.covers(tags=record.tags, language=record.language)


@given(facts, states, requesters)
def test_disclose_federated_release_gets_nothing_embargoed_frozen_or_forked(
    record: RecordFacts, state: CollectiveState, requester: str | None
) -> None:
    if disclose(record, state, Audience.FEDERATED, requester=requester):
        assert not state.quality_freeze and not state.forked
        assert not state.embargo.covers(tags=record.tags, language=record.language)


@given(facts, states, requesters)
def test_disclose_federation_scope_reaches_only_the_origins_federation(
    record: RecordFacts, state: CollectiveState, requester: str | None
) -> None:
    if record.scope is Scope.FEDERATION and disclose(record, state, Audience.PEER, requester=requester):
        assert requester is not None
        if state.federation is not None:
            assert requester in state.federation
        else:
            assert record.origin is None or record.origin == requester  # only the origin's own pins


@given(facts, states, st.sampled_from(list(Audience)), requesters, st.booleans())
def test_disclose_withdrawn_content_goes_nowhere(
    record: RecordFacts, state: CollectiveState, audience: Audience, requester: str | None, snapshot: bool
) -> None:
    if record.state is RecordState.WITHDRAWN:
        decision = disclose(record, state, audience, requester=requester, snapshot=snapshot)
        assert not decision.carries_content
        assert decision.form is not Form.AGGREGATE


@given(facts, states, st.sampled_from(EXTERNAL), requesters)
def test_disclose_records_still_in_the_pipeline_never_leave(
    record: RecordFacts, state: CollectiveState, audience: Audience, requester: str | None
) -> None:
    if not record.state.live:
        assert not disclose(record, state, audience, requester=requester)


@given(facts, states, st.sampled_from(EXTERNAL), requesters)
def test_disclose_anonymous_records_carry_no_identifier_beyond_the_node(
    record: RecordFacts, state: CollectiveState, audience: Audience, requester: str | None
) -> None:
    decision = disclose(record, state, audience, requester=requester)
    if record.attribution is AttributionMode.ANONYMOUS:
        assert decision.identifier is Identifier.NONE
    assert decision.identifier is not Identifier.INTERNAL


@given(facts, states)
def test_disclose_eval_scores_only_consenting_own_records_in_aggregate(
    record: RecordFacts, state: CollectiveState
) -> None:
    decision = disclose(record, state, Audience.EVAL)
    if decision:
        assert decision.form is Form.AGGREGATE
        assert record.eval is EvalConsent.YES and record.origin is None
        assert not state.quality_freeze


@given(facts, states)
def test_admit_takes_only_live_shareable_records_outside_every_gate(
    record: RecordFacts, state: CollectiveState
) -> None:
    decision = admit(record, state)
    if decision:
        assert record.state.live and record.scope is not Scope.NODE
        assert not state.quality_freeze and not state.forked
        assert not state.embargo.covers(tags=record.tags, language=record.language)
        assert (decision.form is Form.RECORD) == (record.scope is Scope.PUBLIC)


@given(facts, states, st.sampled_from(list(Audience)))
def test_disclose_tombstone_names_only_records_the_audience_could_have_held(
    record: RecordFacts, state: CollectiveState, audience: Audience
) -> None:
    decision = disclose_tombstone(record, state, audience)
    if decision and audience not in (Audience.ADMIN, Audience.MEMBER):
        assert record.state is RecordState.WITHDRAWN and record.admitted
        assert record.scope is not Scope.NODE
        if audience in (Audience.PUBLIC, Audience.FEDERATED):
            assert record.scope is Scope.PUBLIC
        assert decision.form is Form.LISTING


def test_disclose_each_refusal_names_its_reason() -> None:
    base = RecordFacts(
        uid="u",
        scope=Scope.PUBLIC,
        license=License.CC0,
        ai_use="",
        eval=EvalConsent.YES,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.RELEASED,
        admitted=True,
        tags=("tax",),
        language="en",
    )
    open_state = CollectiveState()
    cases = [
        (base, open_state, Audience.PUBLIC, Reason.ALLOWED),
        (_with(base, state=RecordState.WITHDRAWN), open_state, Audience.PUBLIC, Reason.WITHDRAWN),
        (_with(base, state=RecordState.QUARANTINED), open_state, Audience.PEER, Reason.NOT_LIVE),
        (_with(base, scope=Scope.NODE), open_state, Audience.PEER, Reason.NODE_SCOPE),
        (_with(base, scope=Scope.FEDERATION), open_state, Audience.PUBLIC, Reason.FEDERATION_SCOPE),
        (_with(base, admitted=False), open_state, Audience.PEER, Reason.NOT_ADMITTED),
        (base, CollectiveState(quality_freeze=True), Audience.PEER, Reason.QUALITY_FREEZE),
        (base, CollectiveState(embargo=Embargo(on=True, tags=("tax",))), Audience.PUBLIC, Reason.EMBARGO),
        (base, CollectiveState(forked=True), Audience.FEDERATED, Reason.FORKED),
        (_with(base, eval=EvalConsent.NO), open_state, Audience.EVAL, Reason.NO_EVAL_CONSENT),
    ]
    for record, state, audience, reason in cases:
        assert disclose(record, state, audience, requester=NODES[0]).reason is reason, (record, audience)


def test_disclose_published_snapshot_stays_served_under_a_later_embargo_but_not_after_withdrawal() -> None:
    record = RecordFacts(
        uid="u",
        scope=Scope.PUBLIC,
        license=License.CC0,
        ai_use="",
        eval=EvalConsent.YES,
        attribution=AttributionMode.USERNAME,
        state=RecordState.RELEASED,
        admitted=True,
    )
    embargo = CollectiveState(embargo=Embargo(on=True))
    assert disclose(record, embargo, Audience.PUBLIC, snapshot=True)
    assert not disclose(record, embargo, Audience.PUBLIC)
    assert not disclose(_with(record, state=RecordState.WITHDRAWN), embargo, Audience.PUBLIC, snapshot=True)


def _with(record: RecordFacts, **changes: object) -> RecordFacts:
    return msgspec.structs.replace(record, **changes)


# -- anonymity over whole records ------------------------------------------------------------

SALT = b"s" * 32
ATTRIBUTIONS = st.one_of(
    st.just(("anonymous", None)),
    st.just(("username", None)),
    st.sampled_from(["fox", "Fox", "owl", "river"]).map(lambda p: ("pseudonym", p)),
)


def _record(uid: str, member: str, mode: str, pseudonym: str | None, licence: License) -> Record:
    member_hash = contributor_hash(SALT, "local", member)
    if mode == "anonymous":
        attribution, chash = Attribution(AttributionMode.ANONYMOUS), member_hash  # a careless store
    elif mode == "username":
        attribution, chash = Attribution(AttributionMode.USERNAME, member), member_hash
    else:
        assert pseudonym is not None
        attribution, chash = (
            Attribution(AttributionMode.PSEUDONYM, pseudonym),
            pseudonym_hash(SALT, member_hash, pseudonym),
        )
    return Record(
        uid=uid,
        created_at=1,
        route=Channel.API,
        model=None,
        content=(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")),
        label=Label.GOOD,
        license=licence,
        ai_use="",
        eval=EvalConsent.YES,
        attribution=attribution,
        contributor_hash=chash,
        scope=Scope.PUBLIC,
        provenance=Provenance(Source.NATURAL, False, "text", Checks({}, "0" * 64)),
    )


def _identifiers(record: Record) -> set[str]:
    return {v for v in (record.contributor_hash, record.attribution.name) if v}


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ada", "ben"]), ATTRIBUTIONS, st.sampled_from(list(License))),
        min_size=2,
        max_size=12,
    ),
    st.sampled_from([Audience.PUBLIC, Audience.FEDERATED, Audience.PEER]),
)
def test_public_form_anonymous_record_shares_no_identifier_with_the_members_other_records(
    spec: list[tuple[str, tuple[str, str | None], License]], audience: Audience
) -> None:
    records = [_record(f"r{i}", m, mode, p, lic) for i, (m, (mode, p), lic) in enumerate(spec)]
    shown: list[tuple[str, Record]] = []
    for (member, _, _), record in zip(spec, records, strict=True):
        fact = RecordFacts(
            uid=record.uid,
            scope=record.scope,
            license=record.license,
            ai_use=record.ai_use,
            eval=record.eval,
            attribution=record.attribution.mode,
            state=RecordState.RELEASED,
            admitted=True,
        )
        decision = disclose(fact, CollectiveState(), audience, requester=NODES[0])
        assert decision.carries_content
        shown.append((member, public_form(record, decision)))
    for (member_a, a), (member_b, b) in itertools.combinations(shown, 2):
        if member_a != member_b:
            continue
        if AttributionMode.ANONYMOUS in (a.attribution.mode, b.attribution.mode):
            assert not (_identifiers(a) & _identifiers(b))
        pa, pb = a.attribution, b.attribution
        if pa.mode is pb.mode is AttributionMode.PSEUDONYM and pa.name != pb.name:
            assert pa.name is not None and pb.name is not None
            if pa.name.casefold() != pb.name.casefold():
                assert a.contributor_hash != b.contributor_hash
    for _, record in shown:
        if record.attribution.mode is AttributionMode.ANONYMOUS:
            assert _identifiers(record) == set()


@given(st.sets(st.sampled_from(list(License)), min_size=1))
def test_share_alike_mixed_only_when_cc_by_sa_meets_another_licence(licences: set[License]) -> None:
    assert share_alike_mixed(licences) == (License.CC_BY_SA in licences and len(licences) > 1)
    # Release buckets are per licence: one bucket never mixes.
    for bucket in {lic.bucket for lic in licences}:
        assert not share_alike_mixed({lic for lic in licences if lic.bucket == bucket})
