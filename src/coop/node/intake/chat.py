"""What every intake format is parsed into: one chat, before redaction."""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from coop.governance import Feedback, Message

__all__ = ["LIMITS", "IntakeFormat", "Limits", "ParsedChat"]


class IntakeFormat(enum.StrEnum):
    OPENWEBUI = "openwebui"  # an Open WebUI chat or export (JSON, JSON array or NDJSON)
    TEXT = "text"  # "User:" / "Assistant:" turns, or a prompt and a response
    MESSAGES = "messages"  # {"messages": [{"role": ..., "content": ...}]}


class Limits(msgspec.Struct, frozen=True):
    max_messages: int = 500
    max_message_chars: int = 100_000
    max_chats: int = 10_000
    max_tags: int = 32
    max_tag_chars: int = 64


LIMITS: Final = Limits()


class ParsedChat(msgspec.Struct, frozen=True):
    """One conversation as the member shared it (not yet redacted)."""

    format: IntakeFormat
    messages: tuple[Message, ...]
    feedback: tuple[Feedback, ...] = ()
    model: str | None = None
    models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    title: str | None = None
    created_at: int | None = None  # unix seconds, from the export where it has them
    source_id: str | None = None  # the chat's id in its export, for picking one
