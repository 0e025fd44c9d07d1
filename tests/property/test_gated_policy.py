"""Gated buckets in the disclosure policy: random records x random states x every audience.

Gating a licence bucket only ever removes disclosures, and only public, federated and peer
ones (admins, the member, evaluation runs and release cuts see no difference); a grantee sees
of the co-op's own records exactly what the public would see were nothing gated, and of a
mirrored record no more than the public (a grant here is not the origin's grant).
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    License,
    Reason,
    RecordFacts,
    RecordState,
    Scope,
    admit,
    disclose,
    disclose_tombstone,
)

NODES = [f"{i:064x}" for i in range(1, 4)]
LICENCES = [lic.value for lic in License]
GATEABLE = frozenset({Audience.PUBLIC, Audience.FEDERATED, Audience.PEER})

states = st.builds(
    CollectiveState,
    embargo=st.builds(
        Embargo,
        on=st.booleans(),
        tags=st.lists(st.sampled_from(["tax", "law"]), max_size=1, unique=True).map(tuple),
    ),
    quality_freeze=st.booleans(),
    forked=st.booleans(),
    federation=st.one_of(st.none(), st.frozensets(st.sampled_from(NODES), max_size=3)),
    gated=st.frozensets(st.sampled_from(LICENCES), max_size=len(LICENCES)),
    mirror_gated=st.booleans(),
)
facts = st.builds(
    RecordFacts,
    uid=st.uuids().map(str),
    scope=st.sampled_from(list(Scope)),
    license=st.sampled_from(list(License)),
    ai_use=st.just("train-ai=y"),
    eval=st.sampled_from(list(EvalConsent)),
    attribution=st.sampled_from(list(AttributionMode)),
    state=st.sampled_from(list(RecordState)),
    admitted=st.booleans(),
    tags=st.lists(st.sampled_from(["tax", "law", "code"]), max_size=2, unique=True).map(tuple),
    language=st.sampled_from(["en", None]),
    origin=st.one_of(st.none(), st.sampled_from(NODES)),
)
requesters = st.one_of(st.none(), st.sampled_from(NODES))


def ungated(state: CollectiveState) -> CollectiveState:
    return msgspec.structs.replace(state, gated=frozenset(), mirror_gated=False)


@settings(max_examples=400, deadline=None)
@given(record=facts, state=states, requester=requesters, snapshot=st.booleans())
def test_gating_only_removes_public_federated_and_peer_disclosures(
    record: RecordFacts, state: CollectiveState, requester: str | None, snapshot: bool
) -> None:
    for audience in Audience:
        gated = disclose(record, state, audience, requester=requester, snapshot=snapshot)
        free = disclose(record, ungated(state), audience, requester=requester, snapshot=snapshot)
        if gated:
            assert gated == free, (audience, gated, free)  # never adds nor changes a form
        elif free:
            # A grantee's grant is this co-op's: a mirrored record of a licence gated here stays
            # behind the gate for it too (the origin never granted it).
            mirrored_to_grantee = audience is Audience.GRANTEE and record.origin is not None
            assert audience in GATEABLE or mirrored_to_grantee, (audience, free)
            assert record.license.value in state.gated
            # A gated record a peer may mirror stays within the origin's federation, as
            # federation scope does: outside it, the refusal says so.
            within = audience is Audience.PEER and gated.reason is Reason.OUTSIDE_FEDERATION
            assert gated.reason is Reason.GATED or within, gated
        else:
            held = (Reason.GATED, Reason.OUTSIDE_FEDERATION)
            assert gated.reason == free.reason or gated.reason in held, (gated, free)
        assert disclose_tombstone(record, state, audience) == disclose_tombstone(
            record, ungated(state), audience
        )
    assert admit(record, state) == admit(record, ungated(state))  # the cut takes gated records; exits gate


@settings(max_examples=400, deadline=None)
@given(record=facts, state=states, snapshot=st.booleans())
def test_grantee_sees_what_the_public_would_without_the_gate(
    record: RecordFacts, state: CollectiveState, snapshot: bool
) -> None:
    grantee = disclose(record, state, Audience.GRANTEE, snapshot=snapshot)
    if record.origin is None:
        assert grantee == disclose(record, ungated(state), Audience.PUBLIC, snapshot=snapshot)
    else:
        assert grantee == disclose(record, state, Audience.PUBLIC, snapshot=snapshot)


@settings(max_examples=300, deadline=None)
@given(record=facts, state=states, requester=requesters)
def test_a_gated_bucket_never_reaches_the_public_and_reaches_peers_only_when_mirrored(
    record: RecordFacts, state: CollectiveState, requester: str | None
) -> None:
    if record.license.value not in state.gated:
        return
    assert not disclose(record, state, Audience.PUBLIC)
    assert not disclose(record, state, Audience.PUBLIC, snapshot=True)
    assert not disclose(record, state, Audience.FEDERATED)
    if not state.mirror_gated:
        assert not disclose(record, state, Audience.PEER, requester=requester)


def test_examples() -> None:
    record = RecordFacts(
        uid="u",
        scope=Scope.PUBLIC,
        license=License.CC_BY,
        ai_use="train-ai=y",
        eval=EvalConsent.YES,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.RELEASED,
        admitted=True,
    )
    gated = CollectiveState(gated=frozenset({License.CC_BY.value}))
    assert disclose(record, gated, Audience.PUBLIC).reason is Reason.GATED
    assert disclose(record, gated, Audience.PEER, requester=NODES[0]).reason is Reason.GATED
    assert disclose(
        record, msgspec.structs.replace(gated, mirror_gated=True), Audience.PEER, requester=NODES[0]
    )
    assert disclose(record, gated, Audience.GRANTEE)
    assert disclose(record, CollectiveState(), Audience.PUBLIC)
