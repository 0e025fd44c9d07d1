"""Processing one waiting-room entry into a record, or into quarantine.

Pure: the caller passes the entry, its uid, time and contributor; the
store applies the outcome in one transaction.  Processing the same entry
twice gives the same outcome, so a batch killed halfway is simply re-run.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from typing import Final

import msgspec

from coop.governance import (
    Channel,
    Checks,
    Feedback,
    Message,
    Provenance,
    Record,
    Role,
    canonical_bytes,
    sha256_hex,
)
from coop.node.contributions.submission import Submission
from coop.node.intake.chat import IntakeFormat, ParsedChat
from coop.node.intake.redaction import redact
from coop.node.members.attribution import Contributor, public_identity

__all__ = ["Accepted", "Outcome", "Quarantined", "dedup_key", "process_entry", "redacted_submission"]

_SPACES: Final = re.compile(r"\s+")
_SUBMISSION: Final = msgspec.json.Decoder(Submission)


class Accepted(msgspec.Struct, frozen=True):
    record: Record
    record_bytes: bytes
    record_sha256: str
    dedup_key: str
    pii: dict[str, int]


class Quarantined(msgspec.Struct, frozen=True):
    reason: str
    pii: dict[str, int]


Outcome = Accepted | Quarantined


def process_entry(
    raw_submission: bytes,
    *,
    uid: str,
    created_at: int,
    contributor: Contributor,
    salt: bytes,
    threshold: int,
) -> Outcome:
    """Validate, redact and build the record; quarantine what needs a person's eyes.

    The record is built in its public form: it names the contributor only as the member
    chose (:func:`attribution.public_identity`); the node keeps the link to the member.
    """
    try:
        sub = _SUBMISSION.decode(raw_submission)
    except (msgspec.DecodeError, ValueError) as exc:
        return Quarantined(reason=f"malformed entry: {exc}", pii={})
    problem = _validate(sub)
    if problem is not None:
        return Quarantined(reason=f"validation failed: {problem}", pii={})
    counts: Counter[str] = Counter()

    def clean(text: str | None) -> str | None:
        if text is None:
            return None
        result = redact(text)
        counts.update(result.counts())
        return result.text

    messages = tuple(
        Message(role=m.role, content=clean(m.content) or "", model=m.model, timestamp=m.timestamp)
        for m in sub.chat.messages
    )
    feedback = tuple(
        Feedback(
            message_index=f.message_index,
            rating=f.rating,
            reason=clean(f.reason),
            comment=clean(f.comment),
            tags=f.tags,
        )
        for f in sub.chat.feedback
    )
    note = clean(sub.note)
    correction = clean(sub.correction)
    pii = dict(sorted(counts.items()))
    total = sum(pii.values())
    if total > threshold:
        detail = ", ".join(f"{kind}: {n}" for kind, n in pii.items())
        return Quarantined(
            reason=f"{total} pieces of personal data found ({detail}); more than {threshold} "
            "needs an admin's review",
            pii=pii,
        )
    conversation = canonical_bytes({"messages": messages, "feedback": feedback})
    attribution, public_hash = public_identity(sub.attribution, contributor, salt)
    record = Record(
        uid=uid,
        created_at=created_at,
        route=sub.channel,
        model=sub.chat.model or next((m.model for m in messages if m.model), None),
        models=sub.chat.models,
        content=messages,
        feedback=feedback,
        label=sub.label,
        note=note,
        correction=correction,
        tags=sub.tags,
        language=sub.language,
        license=sub.license,
        ai_use=sub.ai_use,
        eval=sub.eval,
        attribution=attribution,
        contributor_hash=public_hash,
        scope=sub.scope,
        provenance=Provenance(
            source=sub.source,
            prompt_shown=sub.prompt_shown,
            format=sub.chat.format.value,
            checks=Checks(pii=pii, content_sha256=sha256_hex(conversation)),
        ),
    )
    data = canonical_bytes(record)
    return Accepted(
        record=record,
        record_bytes=data,
        record_sha256=sha256_hex(data),
        dedup_key=dedup_key(messages),
        pii=pii,
    )


def redacted_submission(record: Record, *, terms_version: str) -> Submission:
    """A waiting-room entry rebuilt from a processed record, for an edit after processing.

    The raw submission is erased once a record is accepted; an edit starts from the
    redacted text, so re-processing it can never bring personal data back.
    """
    try:
        fmt = IntakeFormat(record.provenance.format)
    except ValueError:
        fmt = IntakeFormat.MESSAGES
    chat = ParsedChat(
        format=fmt,
        messages=record.content,
        feedback=record.feedback,
        model=record.model,
        models=record.models,
    )
    return Submission(
        chat=chat,
        channel=record.route,
        label=record.label,
        license=record.license,
        ai_use=record.ai_use,
        eval=record.eval,
        scope=record.scope,
        attribution=record.attribution,
        terms_version=terms_version,
        note=record.note,
        correction=record.correction,
        tags=record.tags,
        language=record.language,
        source=record.provenance.source,
        prompt_shown=record.provenance.prompt_shown,
    )


def dedup_key(messages: tuple[Message, ...]) -> str:
    """Hash of the conversation with case, width and spacing normalised away."""
    digest = hashlib.sha256()
    for message in messages:
        text = _SPACES.sub(" ", unicodedata.normalize("NFKC", message.content)).strip().casefold()
        digest.update(message.role.value.encode())
        digest.update(b"\x1f")
        digest.update(text.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def _validate(sub: Submission) -> str | None:
    roles = {m.role for m in sub.chat.messages}
    if Role.USER not in roles:
        return "the chat has no user turn"
    if Role.ASSISTANT not in roles:
        return "the chat has no assistant turn to judge"
    if any(not m.content.strip() for m in sub.chat.messages):
        return "the chat has an empty message"
    if any(not 0 <= f.message_index < len(sub.chat.messages) for f in sub.chat.feedback):
        return "feedback points at a message the chat does not have"
    if sub.channel not in Channel:  # pragma: no cover - the decoder already enforces it
        return f"unknown channel {sub.channel}"
    return None
