"""Processing one waiting-room entry: redaction, quarantine, validation, determinism."""

from __future__ import annotations

import msgspec
import pytest

from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    EvalConsent,
    Feedback,
    Label,
    License,
    Message,
    Role,
    Scope,
    sha256_hex,
)
from coop.node.contributions.pipeline import Accepted, Quarantined, dedup_key, process_entry
from coop.node.contributions.submission import Submission
from coop.node.intake.chat import IntakeFormat, ParsedChat
from coop.node.members.attribution import Contributor


def _submission(
    *messages: tuple[Role, str], note: str | None = None, feedback: tuple[Feedback, ...] = ()
) -> bytes:
    chat = ParsedChat(
        format=IntakeFormat.TEXT,
        messages=tuple(Message(role=r, content=c) for r, c in messages),
        feedback=feedback,
    )
    sub = Submission(
        chat=chat,
        channel=Channel.API,
        label=Label.FAIL,
        license=License.CC_BY,
        ai_use="train-ai=n",
        eval=EvalConsent.YES,
        scope=Scope.PUBLIC,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        terms_version="t1",
        note=note,
    )
    return msgspec.json.encode(sub)


MEMBER = Contributor(member_hash="h" * 64, handle="ada")
SALT = b"s" * 32


def _process(raw: bytes, threshold: int = 5) -> Accepted | Quarantined:
    return process_entry(
        raw, uid="u1", created_at=1_700_000_000, contributor=MEMBER, salt=SALT, threshold=threshold
    )


def test_process_entry_redacts_pii_in_messages_and_note() -> None:
    raw = _submission(
        (Role.USER, "Write to me at jane.doe@example.com please"),
        (Role.ASSISTANT, "Sure, I will."),
        note="my email is jane.doe@example.com",
    )
    outcome = _process(raw)
    assert isinstance(outcome, Accepted)
    assert outcome.record.content[0].content == "Write to me at [EMAIL] please"
    assert outcome.record.note == "my email is [EMAIL]"
    assert outcome.pii == {"email": 2}
    assert outcome.record.provenance.checks.pii == {"email": 2}
    assert b"jane.doe" not in outcome.record_bytes


def test_process_entry_more_than_threshold_hits_is_quarantined_with_reason() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(6))
    outcome = _process(_submission((Role.USER, text), (Role.ASSISTANT, "ok")))
    assert isinstance(outcome, Quarantined)
    assert "6 pieces of personal data" in outcome.reason
    assert outcome.pii == {"email": 6}


def test_process_entry_exactly_threshold_hits_is_accepted() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(5))
    assert isinstance(_process(_submission((Role.USER, text), (Role.ASSISTANT, "ok"))), Accepted)


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        pytest.param(((Role.ASSISTANT, "hello"),), "no user turn", id="no-user"),
        pytest.param(((Role.USER, "hello"),), "no assistant turn", id="no-assistant"),
        pytest.param(((Role.USER, "hi"), (Role.ASSISTANT, "  ")), "empty message", id="empty"),
    ],
)
def test_process_entry_invalid_chat_is_quarantined(
    messages: tuple[tuple[Role, str], ...], reason: str
) -> None:
    outcome = _process(_submission(*messages))
    assert isinstance(outcome, Quarantined)
    assert reason in outcome.reason


def test_process_entry_feedback_out_of_range_is_quarantined() -> None:
    raw = _submission(
        (Role.USER, "q"), (Role.ASSISTANT, "a"), feedback=(Feedback(message_index=7, rating=-1),)
    )
    outcome = _process(raw)
    assert isinstance(outcome, Quarantined)
    assert "feedback" in outcome.reason


def test_process_entry_malformed_bytes_are_quarantined() -> None:
    outcome = _process(b'{"chat": 1}')
    assert isinstance(outcome, Quarantined)
    assert outcome.reason.startswith("malformed entry")


def test_process_entry_same_input_same_record_bytes() -> None:
    raw = _submission((Role.USER, "Call 555-123-4567?"), (Role.ASSISTANT, "No."))
    first, second = _process(raw), _process(raw)
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.record_bytes == second.record_bytes
    assert first.record_sha256 == sha256_hex(first.record_bytes)


def test_dedup_key_ignores_case_and_spacing_but_not_words() -> None:
    a = (Message(role=Role.USER, content="Hello   World"), Message(role=Role.ASSISTANT, content="Hi"))
    b = (Message(role=Role.USER, content="hello world "), Message(role=Role.ASSISTANT, content="hi"))
    c = (Message(role=Role.USER, content="hello world"), Message(role=Role.ASSISTANT, content="bye"))
    assert dedup_key(a) == dedup_key(b)
    assert dedup_key(a) != dedup_key(c)
