"""A gated record the origin lets peers mirror stays within its federation, like federation scope."""

from __future__ import annotations

from coop.governance import AttributionMode, EvalConsent, License, Scope
from coop.governance.disclosure import (
    Audience,
    CollectiveState,
    Reason,
    RecordFacts,
    RecordState,
    disclose,
)

ORIGIN = "a" * 64
MEMBER = "b" * 64
STRANGER = "c" * 64


def _record(license: License, *, origin: str | None = ORIGIN) -> RecordFacts:
    return RecordFacts(
        uid="r1",
        scope=Scope.PUBLIC,
        license=license,
        ai_use="train-ai=y",
        eval=EvalConsent.YES,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.ACCEPTED,
        admitted=True,
        origin=origin,
    )


STATE = CollectiveState(
    gated=frozenset({License.CC_BY_SA.value}),
    mirror_gated=True,
    federation=frozenset({ORIGIN, MEMBER}),
)


def test_gated_peer_scope_a_mirror_serves_a_gated_record_only_within_the_federation() -> None:
    gated = _record(License.CC_BY_SA)
    assert disclose(gated, STATE, Audience.PEER, requester=MEMBER)
    refused = disclose(gated, STATE, Audience.PEER, requester=STRANGER)
    assert not refused and refused.reason is Reason.OUTSIDE_FEDERATION
    # Not gated: public scope goes to any peer, as before.
    assert disclose(_record(License.CC0), STATE, Audience.PEER, requester=STRANGER)


def test_gated_peer_scope_the_origin_serves_its_gated_records_only_to_its_federation() -> None:
    own = _record(License.CC_BY_SA, origin=None)
    assert disclose(own, STATE, Audience.PEER, requester=MEMBER)
    assert not disclose(own, STATE, Audience.PEER, requester=STRANGER)
