"""A contribution as it arrives: the wire request, its validation, and the waiting-room entry.

``build_submission`` turns a decoded request into a :class:`Submission`
(choices resolved against the co-op's defaults, content parsed), or raises an
error that names the offending field.  It is pure: the caller passes the
member, the defaults and the clock.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Final, TypeVar

import msgspec

from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    Defaults,
    EvalConsent,
    GovernanceError,
    Label,
    License,
    Scope,
    Source,
    parse_ai_use,
    parse_attribution,
    parse_enum,
)
from coop.node.errors import InputError, MalformedError, PayloadTooLargeError
from coop.node.intake.chat import IntakeFormat, Limits, ParsedChat
from coop.node.intake.formats import parse_content, select_chat

__all__ = [
    "AttributionChoice",
    "ContributionRequest",
    "ContributionState",
    "EditRequest",
    "IngestRequest",
    "IngestUser",
    "Submission",
    "apply_edit",
    "build_submission",
    "content_bytes",
    "parse_choice",
]

_E = TypeVar("_E", bound=enum.StrEnum)

# ``username``, ``anonymous`` or ``pseudonym:NAME``: the form is checked as the request is
# decoded (msgspec names the field); the name's own rules are parse_attribution's.
AttributionChoice = Annotated[str, msgspec.Meta(pattern=r"^(username|anonymous|pseudonym:.*)$")]

_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_TAG: Final = re.compile(r"^[\w][\w .:/+#-]{0,63}$", re.UNICODE)


class ContributionState(enum.StrEnum):
    WAITING = "waiting_room"
    PROCESSING = "processing"
    ACCEPTED = "accepted"
    RELEASED = "released"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    WITHDRAWN = "withdrawn"

    @property
    def editable(self) -> bool:
        """Before release a member edits in place; after, an edit makes a new record."""
        return self in _EDITABLE

    @property
    def live(self) -> bool:
        """Accepted or released: part of what the node publishes."""
        return self in (ContributionState.ACCEPTED, ContributionState.RELEASED)


_EDITABLE: Final = frozenset(
    {ContributionState.WAITING, ContributionState.QUARANTINED, ContributionState.ACCEPTED}
)


class ContributionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/contributions`` (and what the CLI sends)."""

    label: Label
    content: msgspec.Raw
    consent: bool = False
    format: IntakeFormat | None = None
    chat_id: str | None = None
    license: License | None = None
    ai_use: str | None = None
    eval: EvalConsent | None = None
    scope: Scope | None = None
    attribution: AttributionChoice | None = None
    terms_version: str | None = None
    note: str | None = None
    correction: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    language: str | None = None
    source: Source = Source.NATURAL
    prompt_shown: bool = False
    channel: Channel = Channel.API  # the client says which intake route it is (api, cli, web)


# Caps on who an integration says its user is: an Open WebUI id is a UUID, a name a display
# name, an address at most 320 characters (RFC 5321).  Over them the request is refused (422,
# naming ``user.id``, ``user.name`` or ``user.email``), never stored.
MAX_USER_ID: Final = 256
MAX_USER_NAME: Final = 256
MAX_USER_EMAIL: Final = 320


class IngestUser(msgspec.Struct):
    """The Open WebUI user, as its action passes ``__user__`` (only ``id`` is required).

    Other fields of ``__user__`` are ignored.  The node keeps the id (its key for the member)
    and a handle cleaned from the name; the e-mail is read only to be bounded, and not stored.
    """

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_USER_ID)]
    name: Annotated[str, msgspec.Meta(max_length=MAX_USER_NAME)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=MAX_USER_EMAIL)] | None = None


class IngestRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/contributions/ingest`` from an Open WebUI integration."""

    user: IngestUser
    label: Label
    chat: msgspec.Raw
    consent: bool = False
    license: License | None = None
    ai_use: str | None = None
    eval: EvalConsent | None = None
    scope: Scope | None = None
    attribution: AttributionChoice | None = None
    terms_version: str | None = None
    note: str | None = None
    correction: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    language: str | None = None
    prompt_shown: bool = True


class EditRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A member's correction of their own contribution; absent fields stay as they are."""

    label: Label | None = None
    license: License | None = None
    ai_use: str | None = None
    eval: EvalConsent | None = None
    scope: Scope | None = None
    attribution: AttributionChoice | None = None
    note: str | None = None
    correction: str | None = None
    tags: list[str] | None = None
    language: str | None = None


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    """What the waiting room holds: the parsed chat and every choice, resolved."""

    chat: ParsedChat
    channel: Channel
    label: Label
    license: License
    ai_use: str
    eval: EvalConsent
    scope: Scope
    attribution: Attribution
    terms_version: str
    note: str | None = None
    correction: str | None = None
    tags: tuple[str, ...] = ()
    language: str | None = None
    source: Source = Source.NATURAL
    prompt_shown: bool = False


def content_bytes(raw: msgspec.Raw | bytes) -> bytes:
    """The bytes to parse: a JSON string is the text of a file; anything else is JSON itself."""
    data = bytes(raw)
    stripped = data.lstrip()
    if stripped.startswith(b'"'):
        try:
            text = msgspec.json.decode(stripped, type=str)
        except UnicodeDecodeError:
            raise MalformedError("content is not valid UTF-8", field="content") from None
        except msgspec.DecodeError as exc:
            raise InputError(f"content is not a valid JSON string: {exc}", field="content") from None
        return text.encode("utf-8", errors="surrogatepass")
    return data


def build_submission(
    request: ContributionRequest | IngestRequest,
    *,
    channel: Channel,
    username: str | None,
    pseudonym: str | None,
    defaults: Defaults,
    terms_version: str,
    limits: Limits,
    max_note_chars: int,
    body_checked: bool = False,
) -> tuple[Submission, tuple[str, ...]]:
    """Validate a request and resolve its choices; return it with notices for the member.

    ``channel`` is the route the request came by; a contribution request may
    name a more specific one (``cli``, ``web``) for the metrics.  ``body_checked``: the
    request's whole body was refused for repeated keys already (``decode_body``), so content
    sent as JSON (not as a string holding a file's text) is not read for them a second time.
    """
    notices: list[str] = []
    if not request.consent:
        raise InputError(
            "consent is required: set consent to true to agree to the co-op's terms",
            field="consent",
        )
    if request.terms_version is not None and request.terms_version != terms_version:
        raise InputError(
            f"you agreed to terms version {request.terms_version!r}, but the current terms are "
            f"{terms_version!r}: read them again and resubmit",
            field="terms_version",
        )
    if isinstance(request, ContributionRequest):
        chats = parse_content(
            content_bytes(request.content),
            request.format,
            limits=limits,
            keys_checked=body_checked and _inline_json(request.content),
        )
        chat = select_chat(chats, request.chat_id)
        source = request.source
        channel = _client_channel(request.channel)
    else:
        try:
            chats = parse_content(
                content_bytes(request.chat),
                None,
                limits=limits,
                keys_checked=body_checked and _inline_json(request.chat),
            )
        except InputError as exc:
            # The integration sends the chat as `chat`; name the field it knows.
            if exc.field is not None and exc.field.startswith("content"):
                exc.field = "chat" + exc.field[len("content") :]
            raise
        chat = select_chat(chats, None)
        source = Source.PROMPTED if request.prompt_shown else Source.NATURAL
    try:
        # The member's own words are read strictly (a typo must not drop an opt-out); the
        # co-op's default was checked strictly when it was set, and is read as stored.
        if request.ai_use is None:
            parsed = parse_ai_use(defaults.ai_use, field="ai_use")
        else:
            parsed = parse_ai_use(request.ai_use, field="ai_use", strict=True)
        notices.extend(parsed.notices)
        if request.attribution is not None:
            attribution = parse_attribution(request.attribution, username=username)
        elif defaults.attribution is AttributionMode.PSEUDONYM:
            # The default pseudonym is stable per member and reveals nothing about them; None:
            # the member's stored one, settled when the contribution is stored.
            attribution = Attribution(AttributionMode.PSEUDONYM, pseudonym)
        elif defaults.attribution is AttributionMode.USERNAME and username:
            attribution = Attribution(AttributionMode.USERNAME, username)
        else:
            attribution = Attribution(AttributionMode.ANONYMOUS)
    except GovernanceError as exc:
        raise InputError(exc.message, field=exc.field) from None
    ai_use = parsed.value.to_header()
    submission = Submission(
        chat=chat,
        channel=channel,
        label=request.label,
        license=defaults.license if request.license is None else request.license,
        ai_use=ai_use,
        eval=defaults.eval if request.eval is None else request.eval,
        scope=defaults.scope if request.scope is None else request.scope,
        attribution=attribution,
        terms_version=terms_version,
        note=_text(request.note, "note", max_note_chars),
        correction=_text(request.correction, "correction", max_note_chars),
        tags=_tags(list(chat.tags) + list(request.tags), limits),
        language=_language(request.language),
        source=source,
        prompt_shown=request.prompt_shown,
    )
    if not ai_use:
        notices.append("no AI-use preference stated: the data carries no Content-Usage signal")
    return submission, tuple(notices)


def apply_edit(
    submission: Submission,
    edit: EditRequest,
    *,
    username: str | None,
    max_note_chars: int,
    limits: Limits,
) -> tuple[Submission, tuple[str, ...]]:
    """A rectified copy of ``submission``: the member's new choices replace the old ones."""
    notices: tuple[str, ...] = ()
    changes: dict[str, object] = {}
    try:
        for name in ("label", "license", "eval", "scope"):
            if (choice := getattr(edit, name)) is not None:
                changes[name] = choice
        if edit.ai_use is not None:
            parsed = parse_ai_use(edit.ai_use, field="ai_use", strict=True)
            changes["ai_use"] = parsed.value.to_header()
            notices = parsed.notices
        if edit.attribution is not None:
            changes["attribution"] = parse_attribution(edit.attribution, username=username)
    except GovernanceError as exc:
        raise InputError(exc.message, field=exc.field) from None
    if edit.note is not None:
        changes["note"] = _text(edit.note, "note", max_note_chars)
    if edit.correction is not None:
        changes["correction"] = _text(edit.correction, "correction", max_note_chars)
    if edit.tags is not None:
        changes["tags"] = _tags(edit.tags, limits)
    if edit.language is not None:
        changes["language"] = _language(edit.language)
    if not changes:
        raise InputError("nothing to change: name at least one field", field="body")
    return msgspec.structs.replace(submission, **changes), notices


def parse_choice(kind: type[_E], value: str, field: str) -> _E:
    """A choice typed as text (a web form's field): the member of ``kind``, or an error naming ``field``."""
    try:
        return parse_enum(kind, value, field=field)
    except GovernanceError as exc:
        raise InputError(exc.message, field=exc.field) from None


def _inline_json(raw: msgspec.Raw) -> bool:
    """Whether content came as JSON in the body itself (not as a JSON string: a file's text)."""
    return not bytes(raw).lstrip().startswith(b'"')


def _client_channel(channel: Channel) -> Channel:
    if channel is Channel.OPENWEBUI:
        raise InputError("Open WebUI chats come through the ingest endpoint", field="channel")
    return channel


def _text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise PayloadTooLargeError(f"{field} is longer than {limit} characters", field=field)
    return value or None


def _tags(tags: list[str], limits: Limits) -> tuple[str, ...]:
    out: list[str] = []
    for index, tag in enumerate(tags):
        tag = tag.strip()
        if not tag:
            continue
        if len(tag) > limits.max_tag_chars or not _TAG.match(tag):
            raise InputError(
                f"tag {tag[:80]!r} must be 1 to {limits.max_tag_chars} letters, digits, spaces or . : / + # -",
                field=f"tags[{index}]",
            )
        if tag not in out:
            out.append(tag)
    if len(out) > limits.max_tags:
        raise PayloadTooLargeError(f"at most {limits.max_tags} tags", field="tags")
    return tuple(out)


def _language(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _LANGUAGE.match(value):
        raise InputError(
            f"{value[:40]!r} is not a BCP 47 language tag (like 'en', 'id' or 'pt-BR')",
            field="language",
        )
    return value
