"""Anonymity holds in every public output built by the node's own functions.

Random members x random attribution choices: each record is built by the pipeline
(``process_entry``), leaves through the release row form (``PublicForms.apply``) and is paid
through the public ledger (``payee_for``, ``compute_payouts``, ``split_ledger``).  No
anonymous record shares an identifier (contributor hash, attribution name, payee label) with
any other record of the same member, each pseudonym has its own hash, and both ledgers sum
exactly to the amount paid.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import (
    ANONYMOUS_PAYEE,
    Attribution,
    AttributionMode,
    Channel,
    EvalConsent,
    Label,
    License,
    Message,
    PayoutRecord,
    PayoutSplit,
    Record,
    Role,
    Scope,
    compute_payouts,
    contributor_hash,
    payee_for,
    record_kind,
)
from coop.node.collective.payouts import split_ledger
from coop.node.contributions.pipeline import Accepted, process_entry
from coop.node.contributions.submission import Submission
from coop.node.intake.chat import IntakeFormat, ParsedChat
from coop.node.members.attribution import Contributor, PublicForms

SALT = b"p" * 32
HANDLES = ["ada", "ben", "cy", "dee", "eli"]
WORDS = ["owl", "fox", "Fox", "river", "quiet-otter-417"]

choices = st.tuples(
    st.integers(min_value=0, max_value=len(HANDLES) - 1),
    st.sampled_from(list(AttributionMode)),
    st.sampled_from(WORDS),
    st.sampled_from(list(Label)),
)


def _attribution(mode: AttributionMode, word: str, member: int) -> Attribution:
    if mode is AttributionMode.PSEUDONYM:
        # Claims keep one member's pseudonyms apart from another's: each member has its own.
        return Attribution(mode, f"{word}-{member}")
    if mode is AttributionMode.USERNAME:
        return Attribution(mode, "a name the client sent")
    return Attribution(mode)


def _record(index: int, member: int, mode: AttributionMode, word: str, label: Label) -> Record:
    sub = Submission(
        chat=ParsedChat(
            format=IntakeFormat.TEXT,
            messages=(
                Message(role=Role.USER, content=f"question {index}"),
                Message(role=Role.ASSISTANT, content=f"answer {index}"),
            ),
        ),
        channel=Channel.API,
        label=label,
        license=License.CC0,
        ai_use="train-ai=y",
        eval=EvalConsent.YES,
        scope=Scope.PUBLIC,
        attribution=_attribution(mode, word, member),
        terms_version="t1",
    )
    outcome = process_entry(
        msgspec.json.encode(sub),
        uid=f"u{index:04d}",
        created_at=1_700_000_000,
        contributor=Contributor(contributor_hash(SALT, "local", HANDLES[member]), HANDLES[member]),
        salt=SALT,
        threshold=5,
    )
    assert isinstance(outcome, Accepted)
    # The release row form, as the release writers apply it to the stored bytes.
    public = PublicForms({}).apply(outcome.record_bytes)
    return msgspec.json.decode(public, type=Record)


@settings(max_examples=60, deadline=None)
@given(st.lists(choices, min_size=1, max_size=30), st.integers(min_value=1, max_value=10**9))
def test_public_outputs_anonymous_records_share_no_identifier_with_the_members_others(
    picks: list[tuple[int, AttributionMode, str, Label]], cents: int
) -> None:
    records = [(m, _record(i, m, mode, word, label)) for i, (m, mode, word, label) in enumerate(picks)]
    payees = {r.uid: payee_for(r.attribution.mode.value, r.attribution.name) for _, r in records}

    def identifiers(record: Record) -> set[str]:
        found = {record.contributor_hash, record.attribution.name, payees[record.uid]}
        return {v for v in found if v and v != ANONYMOUS_PAYEE}

    for member, record in records:
        if record.attribution.mode is not AttributionMode.ANONYMOUS:
            assert payees[record.uid] != ANONYMOUS_PAYEE
            continue
        assert record.contributor_hash is None and record.attribution.name is None
        assert identifiers(record) == set()
        for other_member, other in records:
            if other_member == member and other.uid != record.uid:
                assert not identifiers(record) & identifiers(other)
    # Pseudonyms: one hash each, never the member's own, never shared across members.
    hashes: dict[tuple[int, str], str] = {}
    for member, record in records:
        if record.attribution.mode is AttributionMode.PSEUDONYM:
            assert record.attribution.name is not None and record.contributor_hash is not None
            key = (member, record.attribution.name.casefold())
            assert hashes.setdefault(key, record.contributor_hash) == record.contributor_hash
            assert record.contributor_hash != contributor_hash(SALT, "local", HANDLES[member])
        if record.attribution.mode is AttributionMode.USERNAME:
            assert record.attribution.name == HANDLES[member]
    assert len(set(hashes.values())) == len(hashes)

    # Ledgers: the public one names only what members chose; both sum exactly.
    pairs = [
        PayoutRecord(
            uid=r.uid,
            payee=f"{HANDLES[m]}\x1f{payees[r.uid]}",
            kind=record_kind(r.label.value, bool(r.correction), bool(r.note or r.feedback)),
        )
        for m, r in records
    ]
    amount = f"{cents // 100}.{cents % 100:02d}"
    fine = compute_payouts("v1", pairs, amount=amount, currency="EUR", split=PayoutSplit())
    public, internal = split_ledger(fine)
    assert public.total_minor() == internal.total_minor() == cents
    shown = {line.payee for line in public.lines}
    anonymous_only = {HANDLES[m] for m, _ in records} - {
        HANDLES[m] for m, r in records if r.attribution.mode is AttributionMode.USERNAME
    }
    assert not shown & anonymous_only, "a member is named only where they chose their handle"
    assert {line.payee for line in internal.lines} <= {"commons", *HANDLES}
