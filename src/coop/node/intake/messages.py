"""Structured messages, and the message pieces every JSON intake format shares.

The format is ``{"messages": [{"role": ..., "content": ...}], "model": ..., "tags": [...]}``
or a bare JSON list of messages; ``content`` is a string or an OpenAI-style list of
parts, of which only text parts are kept.  Error fields are JSON paths into the
upload, rooted at the request field ``content`` (``content.messages[3].role``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, TypeAlias, TypeVar

import msgspec

from coop.governance import Message, Role
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
from coop.node.errors import InputError, PayloadTooLargeError
from coop.node.intake.chat import LIMITS, IntakeFormat, Limits, ParsedChat

__all__ = [
    "Content",
    "NamedTag",
    "TagList",
    "TextPart",
    "decode_json",
    "parse_messages",
    "read_content",
    "read_role",
    "read_tags",
    "unique",
]

_T = TypeVar("_T")

_BOM: Final = b"\xef\xbb\xbf"
_PATH: Final = re.compile(r"(.*) - at `\$(.*)`", re.DOTALL)
_TEXT_PART_TYPES: Final = frozenset({None, "text", "input_text", "output_text"})
_ROLES: Final = ", ".join(role.value for role in Role)


class TextPart(msgspec.Struct, frozen=True):
    """One element of a content list; images, files and audio parts are ignored."""

    type: str | None = None
    text: str | None = None


class NamedTag(msgspec.Struct, frozen=True):
    """A tag written as an object, as older Open WebUI versions do."""

    name: str | None = None


Content: TypeAlias = str | list[str | TextPart] | None
TagList: TypeAlias = list[str | NamedTag] | None


class _InMessage(msgspec.Struct, frozen=True):
    role: str
    content: Content = None
    model: str | None = None


class _Body(msgspec.Struct, frozen=True):
    messages: list[_InMessage]
    model: str | None = None
    tags: TagList = None


_DECODER: Final = msgspec.json.Decoder(_Body | list[_InMessage])


def decode_json(decoder: msgspec.json.Decoder[_T], data: bytes, *, field: str) -> _T:
    """Decode with msgspec, turning its errors into InputError on ``field`` + the JSON path."""
    if json_too_deep(bytes(data)):  # a msgspec.Raw too (bytes of bytes is the same object)
        raise InputError(NESTED_TOO_DEEP, field=field)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as e:
        match = _PATH.fullmatch(str(e))
        if match is None:
            raise InputError(str(e), field=field) from e
        raise InputError(match[1], field=field + match[2]) from e
    except msgspec.DecodeError as e:
        raise InputError(f"not valid JSON: {e}", field=field) from e
    except UnicodeDecodeError as e:  # msgspec checks UTF-8 lazily, inside strings
        raise InputError("content is not valid UTF-8", field=field) from e


def read_role(value: str, *, field: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InputError(f"role {value!r} is not one of: {_ROLES}", field=field) from None


def read_content(content: Content, *, field: str, limits: Limits) -> str:
    """The message text: a string as is, or the text parts of a list joined by newlines."""
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n".join(_texts(content))
    if len(text) > limits.max_message_chars:
        raise PayloadTooLargeError(
            f"message is {len(text)} characters; the limit is {limits.max_message_chars}",
            field=field,
        )
    return text


def _texts(parts: list[str | TextPart]) -> list[str]:
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif part.type in _TEXT_PART_TYPES and part.text is not None:
            texts.append(part.text)
    return texts


def read_tags(values: TagList, *, field: str, limits: Limits) -> tuple[str, ...]:
    """Tags as strings or ``{"name": ...}`` objects: stripped, empty ones dropped, deduplicated."""
    tags: dict[str, None] = {}
    for i, value in enumerate(values or ()):
        name = (value if isinstance(value, str) else value.name or "").strip()
        if not name:
            continue
        if len(name) > limits.max_tag_chars:
            raise PayloadTooLargeError(
                f"tag is {len(name)} characters; the limit is {limits.max_tag_chars}",
                field=f"{field}[{i}]",
            )
        tags[name] = None
        if len(tags) > limits.max_tags:
            raise PayloadTooLargeError(f"more than {limits.max_tags} tags", field=field)
    return tuple(tags)


def unique(values: Iterable[str | None]) -> tuple[str, ...]:
    """Non-empty values in first-seen order, without repeats."""
    return tuple(dict.fromkeys(v for v in values if v))


def parse_messages(data: bytes, *, limits: Limits = LIMITS) -> ParsedChat:
    """Read ``{"messages": [...], "model"?, "tags"?}`` or a bare list of messages.

    Messages whose text is empty (a tool-call stub, an image without words) are dropped.
    """
    body = decode_json(_DECODER, data.removeprefix(_BOM), field="content")
    tags: tuple[str, ...] = ()
    if isinstance(body, list):
        items, prefix, model = body, "content", None
    else:
        items, prefix, model = body.messages, "content.messages", body.model
        tags = read_tags(body.tags, field="content.tags", limits=limits)
    if len(items) > limits.max_messages:
        raise PayloadTooLargeError(f"{len(items)} messages; the limit is {limits.max_messages}", field=prefix)
    messages: list[Message] = []
    for i, item in enumerate(items):
        role = read_role(item.role, field=f"{prefix}[{i}].role")
        text = read_content(item.content, field=f"{prefix}[{i}].content", limits=limits)
        if text.strip():
            messages.append(Message(role, text, model=item.model or None))
    if not messages:
        raise InputError("no messages with text", field=prefix)
    answered_by = [m.model for m in messages if m.role is Role.ASSISTANT and m.model]
    model = model or (answered_by[-1] if answered_by else None)
    return ParsedChat(
        format=IntakeFormat.MESSAGES,
        messages=tuple(messages),
        model=model,
        models=unique([model, *answered_by]),
        tags=tags,
    )
