"""Which intake format an upload is in, parsing it, and picking one chat from an export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from coop.governance.canonical import duplicate_key
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
from coop.node.errors import InputError, UnsupportedFormatError
from coop.node.intake.chat import LIMITS, IntakeFormat, Limits, ParsedChat
from coop.node.intake.messages import parse_messages
from coop.node.intake.openwebui import parse_openwebui
from coop.node.intake.text import parse_text

__all__ = ["detect_format", "parse_content", "select_chat"]

_WHITESPACE: Final = b" \t\r\n"
_SHOWN_IDS: Final = 10


class _Probe(msgspec.Struct, frozen=True):
    """The keys that tell the formats apart; an empty Raw means the key is absent."""

    chat: msgspec.Raw = msgspec.Raw()
    history: msgspec.Raw = msgspec.Raw()
    models: msgspec.Raw = msgspec.Raw()
    timestamp: msgspec.Raw = msgspec.Raw()
    messages: msgspec.Raw = msgspec.Raw()
    role: msgspec.Raw = msgspec.Raw()


_PROBE: Final = msgspec.json.Decoder(_Probe)
_DOCUMENT: Final = msgspec.json.Decoder(_Probe | list[msgspec.Raw])


def detect_format(data: bytes) -> IntakeFormat:
    """Tell an Open WebUI chat or export, structured messages and plain text apart.

    JSON that is neither of the JSON formats raises UnsupportedFormatError; content
    that starts like JSON but is malformed raises InputError with the JSON error.
    """
    _utf8(data)
    body = data.removeprefix(b"\xef\xbb\xbf").lstrip(_WHITESPACE)
    if body[:1] not in (b"{", b"["):
        return IntakeFormat.TEXT
    if json_too_deep(body):
        raise InputError(NESTED_TOO_DEEP, field="content")
    try:
        document = _DOCUMENT.decode(body)
    except msgspec.DecodeError as e:
        # Several JSON objects, one a line, are NDJSON; anything else is broken JSON.
        first = _probe(body.split(b"\n", 1)[0]) if body[:1] == b"{" else None
        if first is not None and b"\n" in body.rstrip(_WHITESPACE):
            return _of_object(first, ndjson=True)
        raise InputError(f"not valid JSON: {e}", field="content") from e
    if isinstance(document, _Probe):
        return _of_object(document, ndjson=False)
    if not document:
        return IntakeFormat.OPENWEBUI  # an "export all" of nobody's chats; parsing says so
    probe = _probe(document[0])
    if probe is None:
        raise UnsupportedFormatError(
            "a JSON array must hold Open WebUI chats or messages (objects)", field="content[0]"
        )
    if probe.role:
        return IntakeFormat.MESSAGES
    if probe.chat or probe.history or probe.messages:
        return IntakeFormat.OPENWEBUI
    raise UnsupportedFormatError(
        "a JSON array must hold Open WebUI chats (with 'chat' or 'history') "
        "or messages (with 'role' and 'content')",
        field="content[0]",
    )


def _repeated_key(data: bytes) -> str | None:
    """The first key some object repeats, in one JSON document or in each line of an NDJSON
    export (``[3].messages[0].content``: line 4)."""
    # A line is read only after the lines before it parsed (balanced): the whole bounds each.
    if json_too_deep(data):
        raise InputError(NESTED_TOO_DEEP, field="content")
    try:
        try:
            return duplicate_key(data)
        except ValueError:
            pass  # not one document: an NDJSON export, one per line
        for number, line in enumerate(data.splitlines()):
            if line.strip():
                repeated = duplicate_key(line)
                if repeated is not None:
                    return f"[{number}].{repeated}"
    except ValueError as exc:
        raise InputError(f"not valid JSON: {exc}", field="content") from None
    return None


def parse_content(
    data: bytes,
    fmt: IntakeFormat | None = None,
    *,
    limits: Limits = LIMITS,
    keys_checked: bool = False,
) -> list[ParsedChat]:
    """Parse an upload in ``fmt`` (detected when None): one chat, or each chat of an export.

    ``keys_checked``: the caller already refused a repeated key in these very bytes (JSON
    content inside a request body that :func:`coop.node.http.problems.decode_body` read whole).
    """
    fmt = detect_format(data) if fmt is None else fmt
    if fmt is not IntakeFormat.TEXT and not keys_checked:
        # A chat sent as a JSON string or a file is read by msgspec too, which keeps the last of
        # a repeated key: the same refusal as for a request body (two readers must agree).
        repeated = _repeated_key(data)
        if repeated is not None:
            raise InputError(
                f"the key {repeated!r} appears more than once in one object; send each key once",
                field=f"content.{repeated}",
            )
    match fmt:
        case IntakeFormat.OPENWEBUI:
            return parse_openwebui(data, limits=limits)
        case IntakeFormat.MESSAGES:
            return [parse_messages(data, limits=limits)]
        case IntakeFormat.TEXT:
            return [parse_text(_utf8(data), limits=limits)]


def select_chat(chats: Sequence[ParsedChat], chat_id: str | None) -> ParsedChat:
    """The chat to contribute: the only one, or the one whose ``source_id`` is ``chat_id``.

    A ``chat_id`` must match, except that it is ignored for a lone chat that has no
    id of its own (pasted text, structured messages).
    """
    if not chats:
        raise InputError("the content holds no chats", field="content")
    if chat_id is None:
        if len(chats) == 1:
            return chats[0]
        ids = [chat.source_id or "(no id)" for chat in chats[:_SHOWN_IDS]]
        more = ", …" if len(chats) > _SHOWN_IDS else ""
        raise InputError(
            f"the export holds {len(chats)} chats; choose one with chat_id (ids: {', '.join(ids)}{more})",
            field="chat_id",
        )
    for chat in chats:
        if chat.source_id == chat_id:
            return chat
    if len(chats) == 1 and chats[0].source_id is None:
        return chats[0]
    raise InputError(f"no chat with id {chat_id!r} in the content", field="chat_id")


def _of_object(probe: _Probe, *, ndjson: bool) -> IntakeFormat:
    if probe.chat or probe.history or probe.models or probe.timestamp:
        return IntakeFormat.OPENWEBUI
    if probe.messages and not ndjson:
        return IntakeFormat.MESSAGES
    if ndjson:
        raise UnsupportedFormatError(
            "NDJSON is read only as an Open WebUI export: one chat row (with 'chat') a line",
            field="line 1",
        )
    raise UnsupportedFormatError(
        "a JSON object must be an Open WebUI chat (with 'chat' or 'history') "
        "or hold a 'messages' list of {role, content}",
        field="content",
    )


def _probe(raw: bytes) -> _Probe | None:
    """The keys that tell the formats apart, if ``raw`` is a JSON object (its depth checked)."""
    try:
        return _PROBE.decode(raw)
    except msgspec.DecodeError:
        return None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("content is not valid UTF-8", field="content") from e
