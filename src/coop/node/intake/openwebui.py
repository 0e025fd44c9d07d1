"""Open WebUI chats and exports, read into ParsedChats.

Accepted shapes: the per-chat download (a JSON array holding one chat row), "export
all" (a JSON array of rows in older versions, NDJSON with one row a line in current
ones), a bare chat object and a ``{"chat": ...}`` wrapper.  The shared conversation
is the branch of ``chat.history`` that ends at ``history.currentId``; ``chat.messages``
(the same branch as a list, kept by Open WebUI) is the fallback.

Error fields are JSON paths rooted at the request field ``content``
(``content[3].chat.history.currentId``), or at ``line 7`` for NDJSON.  Only the fields
declared below are read: ``user_id``, user objects and everything else are never kept.
"""

from __future__ import annotations

from typing import Final

import msgspec

from coop.governance import Feedback, Message, Role
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
from coop.node.errors import InputError, PayloadTooLargeError, UnsupportedFormatError
from coop.node.intake.chat import LIMITS, IntakeFormat, Limits, ParsedChat
from coop.node.intake.messages import (
    Content,
    TagList,
    decode_json,
    read_content,
    read_role,
    read_tags,
    unique,
)

__all__ = ["export_rows", "parse_openwebui", "parse_row", "unix_seconds"]

_WHITESPACE: Final = b" \t\r\n"
# Upper bounds (exclusive) of seconds, milliseconds, microseconds and nanoseconds for
# dates up to the year 5138; the divisor turns each into seconds.
_TIME_UNITS: Final = ((10**11, 1), (10**14, 10**3), (10**17, 10**6), (10**20, 10**9))

Number = int | float


class _Annotation(msgspec.Struct, frozen=True):
    rating: Number | None = None
    reason: str | None = None
    comment: str | None = None
    tags: TagList = None


class _Message(msgspec.Struct, frozen=True):
    role: str
    content: Content = None
    parent_id: str | None = msgspec.field(name="parentId", default=None)
    model: str | None = None
    timestamp: Number | None = None
    annotation: _Annotation | None = None


class _History(msgspec.Struct, frozen=True):
    # Raw: only the messages on the shared branch are decoded, so a malformed
    # message on an abandoned branch is never fatal.
    messages: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    current_id: str | None = msgspec.field(name="currentId", default=None)


class _Chat(msgspec.Struct, frozen=True):
    id: str | None = None
    title: str | None = None
    models: list[str] | None = None
    history: _History | None = None
    messages: list[msgspec.Raw] | None = None  # legacy: the branch as a list
    tags: TagList = None  # legacy: newer versions keep them in the row's meta
    timestamp: Number | None = None


class _Meta(msgspec.Struct, frozen=True):
    tags: TagList = None


class _Entry(_Chat, frozen=True):
    """A chat row or a ``{"chat": ...}`` wrapper (``chat`` set), or else a bare chat."""

    chat: _Chat | None = None
    created_at: Number | None = None
    meta: _Meta | None = None


_RAW: Final = msgspec.json.Decoder(msgspec.Raw)
_ARRAY: Final = msgspec.json.Decoder(list[msgspec.Raw])
_ENTRY: Final = msgspec.json.Decoder(_Entry)
_MESSAGE: Final = msgspec.json.Decoder(_Message)


class _CycleError(Exception):
    """The ``parentId`` links of history.messages loop back on themselves."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def unix_seconds(value: float | None) -> int | None:
    """Integer unix seconds from seconds, ms, µs or ns; None when absent or out of range."""
    if value is None or isinstance(value, bool) or value != value or value <= 0:
        return None
    for bound, divisor in _TIME_UNITS:
        if value < bound:
            seconds = int(value // divisor)
            return seconds if seconds >= 1 else None
    return None


def parse_openwebui(data: bytes, *, limits: Limits = LIMITS) -> list[ParsedChat]:
    """Every chat in an Open WebUI download or export, in the order of the export.

    In an export of several chats, chats without any message are skipped (they are
    not contributions); a single chat without messages is an error.
    """
    entries = _entries(data, limits)
    chats = [_chat(raw, prefix, limits, single=len(entries) == 1) for prefix, raw in entries]
    kept = [chat for chat in chats if chat is not None]
    if not kept:
        raise InputError(f"none of the {len(entries)} chats has any messages", field="content")
    return kept


def export_rows(data: bytes, *, limits: Limits = LIMITS) -> list[tuple[str, bytes]]:
    """The raw chat rows of an upload, each with the field its errors use (``content[3]``,
    ``line 4``): for a client that reads each chat on its own (:func:`parse_row`), so that one
    broken chat does not stop the others.  The upload as a whole must be an export."""
    # A JSON array's rows come as msgspec.Raw: bytes of their own, as NDJSON lines are.
    return [(where, bytes(raw)) for where, raw in _entries(data, limits)]


def parse_row(raw: bytes, *, field: str = "content", limits: Limits = LIMITS) -> ParsedChat | None:
    """One chat row of an export read on its own: None when it has no messages (not a
    contribution: an export's empty chats are skipped)."""
    return _chat(raw, field, limits, single=False)


def _entries(data: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """The raw chat objects of the upload, each with the field prefix its errors use."""
    body = data.removeprefix(b"\xef\xbb\xbf").strip(_WHITESPACE)
    if not body:
        raise InputError("content is empty", field="content")
    if body[:1] == b"[":
        items = decode_json(_ARRAY, body, field="content")
        if not items:
            raise InputError("the export holds no chats", field="content")
        _check_count(len(items), limits)
        return [(f"content[{i}]", raw) for i, raw in enumerate(items)]
    if body[:1] != b"{":
        raise UnsupportedFormatError(
            "not an Open WebUI export: expected a JSON object, a JSON array or NDJSON",
            field="content",
        )
    if json_too_deep(body):
        raise InputError(NESTED_TOO_DEEP, field="content")
    try:
        _RAW.decode(body)
    except msgspec.DecodeError as e:
        lines = [
            (f"line {n}", line)
            for n, line in enumerate(body.split(b"\n"), start=1)
            if line.strip(_WHITESPACE)
        ]
        if len(lines) < 2 or not _is_json(lines[0][1]):
            raise InputError(f"not valid JSON: {e}", field="content") from e
        _check_count(len(lines), limits)
        return lines
    return [("content", body)]


def _is_json(line: bytes) -> bool:
    """Whether the first line of an upload is one JSON document (the upload's depth checked)."""
    try:
        _RAW.decode(line)
    except msgspec.DecodeError:
        return False
    return True


def _check_count(count: int, limits: Limits) -> None:
    if count > limits.max_chats:
        raise PayloadTooLargeError(
            f"the export holds {count} chats; the limit is {limits.max_chats}", field="content"
        )


def _chat(raw: bytes, prefix: str, limits: Limits, *, single: bool) -> ParsedChat | None:
    entry = decode_json(_ENTRY, raw, field=prefix)
    if entry.chat is not None:
        chat, chat_field = entry.chat, f"{prefix}.chat"
    else:
        chat, chat_field = entry, prefix
    if entry.meta is not None and entry.meta.tags is not None:
        tags = read_tags(entry.meta.tags, field=f"{prefix}.meta.tags", limits=limits)
    else:
        tags = read_tags(chat.tags, field=f"{chat_field}.tags", limits=limits)
    messages, feedback = _conversation(_branch(chat, chat_field, limits), limits)
    if not messages:
        if single:
            raise InputError("the chat has no messages", field=chat_field)
        return None
    title = (entry.title or chat.title or "").strip() or None
    if title is not None and len(title) > limits.max_message_chars:
        where = prefix if (entry.title or "").strip() else chat_field
        raise PayloadTooLargeError("title is too long", field=f"{where}.title")
    answered_by = [m.model for m in messages if m.role is Role.ASSISTANT and m.model]
    models = unique([*(chat.models or ()), *answered_by])
    return ParsedChat(
        format=IntakeFormat.OPENWEBUI,
        messages=messages,
        feedback=feedback,
        model=answered_by[-1] if answered_by else (models[0] if models else None),
        models=models,
        tags=tags,
        title=title,
        created_at=unix_seconds(entry.created_at) or unix_seconds(chat.timestamp),
        source_id=entry.id or chat.id,
    )


def _branch(chat: _Chat, field: str, limits: Limits) -> list[tuple[str, _Message]]:
    """The shared conversation as (error field, message) pairs, root first."""
    legacy = chat.messages or []
    history = chat.history
    if history is not None and history.messages:
        current = history.current_id
        if current is not None and current in history.messages:
            try:
                return _walk(history, current, f"{field}.history.messages", limits)
            except _CycleError as cycle:
                if not legacy:
                    raise InputError(
                        "the parentId links of history.messages form a cycle", field=cycle.field
                    ) from None
        elif not legacy:
            problem = "is missing" if current is None else f"{current!r} is not in history.messages"
            raise InputError(f"currentId {problem}", field=f"{field}.history.currentId")
    if len(legacy) > limits.max_messages:
        raise PayloadTooLargeError(
            f"{len(legacy)} messages; the limit is {limits.max_messages}",
            field=f"{field}.messages",
        )
    return [
        (f"{field}.messages[{i}]", decode_json(_MESSAGE, raw, field=f"{field}.messages[{i}]"))
        for i, raw in enumerate(legacy)
    ]


def _walk(history: _History, current: str, field: str, limits: Limits) -> list[tuple[str, _Message]]:
    """Follow ``parentId`` from ``current`` to the root; a dangling parent ends the walk."""
    branch: list[tuple[str, _Message]] = []
    seen: set[str] = set()
    node: str | None = current
    while node is not None and node in history.messages:
        node_field = f"{field}[{msgspec.json.encode(node).decode()}]"
        if node in seen:
            raise _CycleError(f"{node_field}.parentId")
        if len(branch) == limits.max_messages:
            raise PayloadTooLargeError(
                f"the conversation has more than {limits.max_messages} messages", field=field
            )
        seen.add(node)
        message = decode_json(_MESSAGE, history.messages[node], field=node_field)
        branch.append((node_field, message))
        node = message.parent_id
    branch.reverse()
    return branch


def _conversation(
    branch: list[tuple[str, _Message]], limits: Limits
) -> tuple[tuple[Message, ...], tuple[Feedback, ...]]:
    """Messages with text, and their annotations as feedback indexed among those messages."""
    messages: list[Message] = []
    feedback: list[Feedback] = []
    for field, item in branch:
        role = read_role(item.role, field=f"{field}.role")
        text = read_content(item.content, field=f"{field}.content", limits=limits)
        if not text.strip():
            continue  # an interrupted or failed answer, or an image without words
        if item.annotation is not None:
            rated = _feedback(item.annotation, len(messages), f"{field}.annotation", limits)
            if rated is not None:
                feedback.append(rated)
        messages.append(Message(role, text, model=item.model or None, timestamp=unix_seconds(item.timestamp)))
    return tuple(messages), tuple(feedback)


def _feedback(annotation: _Annotation, index: int, field: str, limits: Limits) -> Feedback | None:
    value = annotation.rating or 0
    rating = (value > 0) - (value < 0)
    reason = _note(annotation.reason, f"{field}.reason", limits)
    comment = _note(annotation.comment, f"{field}.comment", limits)
    tags = read_tags(annotation.tags, field=f"{field}.tags", limits=limits)
    if not (rating or reason or comment or tags):
        return None
    return Feedback(index, rating, reason, comment, tags)


def _note(text: str | None, field: str, limits: Limits) -> str | None:
    text = (text or "").strip()
    if len(text) > limits.max_message_chars:
        raise PayloadTooLargeError(
            f"text is {len(text)} characters; the limit is {limits.max_message_chars}",
            field=field,
        )
    return text or None
