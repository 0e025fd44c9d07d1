"""Plain-text chats: marked turns, or a prompt and a response split by ``---``.

Turns start with ``User:``, ``Assistant:``, ``Human:``, ``AI:`` or ``System:`` at the
start of a line (any case); the lines that follow belong to that turn until the next
marker.  Without markers, a line that is exactly ``---`` separates the prompt (the
user's) from the response (the assistant's).  Errors name the field ``content``.
"""

from __future__ import annotations

import re
from typing import Final

from coop.governance import Message, Role
from coop.node.errors import InputError, PayloadTooLargeError
from coop.node.intake.chat import LIMITS, IntakeFormat, Limits, ParsedChat

__all__ = ["parse_text"]

_MARKER: Final = re.compile(r"(user|human|assistant|ai|system)[ \t]*:(.*)", re.IGNORECASE)
_ROLES: Final = {
    "user": Role.USER,
    "human": Role.USER,
    "assistant": Role.ASSISTANT,
    "ai": Role.ASSISTANT,
    "system": Role.SYSTEM,
}
_SEPARATOR: Final = "---"
_SHAPES: Final = (
    "start each turn with 'User:' or 'Assistant:' at the beginning of a line "
    "('Human:', 'AI:' and 'System:' work too), or write a prompt and a response "
    "separated by a line that is exactly '---'"
)


def parse_text(text: str, *, limits: Limits = LIMITS) -> ParsedChat:
    """Read a pasted chat; surrounding whitespace of each turn is stripped, empty turns dropped."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        raise InputError(f"content is empty: {_SHAPES}", field="content")
    if _MARKER.fullmatch(lines[start]):
        turns = _turns(lines[start:])
    elif _SEPARATOR in lines:
        turns = _prompt_and_response(lines)
    else:
        marked = next((i for i, line in enumerate(lines) if _MARKER.fullmatch(line)), None)
        if marked is None:
            raise InputError(f"content is not a chat: {_SHAPES}", field="content")
        raise InputError(
            f"line {marked + 1} starts a turn, but the text before it belongs to no turn; "
            "start the text with 'User:' or 'Assistant:'",
            field="content",
        )
    messages = tuple(Message(role, body) for role, body in turns if body)
    if not messages:
        raise InputError(f"content has only empty turns: {_SHAPES}", field="content")
    if len(messages) > limits.max_messages:
        raise PayloadTooLargeError(
            f"{len(messages)} turns; the limit is {limits.max_messages}", field="content"
        )
    for n, message in enumerate(messages, start=1):
        if len(message.content) > limits.max_message_chars:
            raise PayloadTooLargeError(
                f"turn {n} is {len(message.content)} characters; the limit is {limits.max_message_chars}",
                field="content",
            )
    return ParsedChat(format=IntakeFormat.TEXT, messages=messages)


def _turns(lines: list[str]) -> list[tuple[Role, str]]:
    turns: list[tuple[Role, list[str]]] = []
    for line in lines:
        marker = _MARKER.fullmatch(line)
        if marker:
            turns.append((_ROLES[marker[1].lower()], [marker[2]]))
        else:
            turns[-1][1].append(line)  # the first line is a marker
    return [(role, "\n".join(body).strip()) for role, body in turns]


def _prompt_and_response(lines: list[str]) -> list[tuple[Role, str]]:
    split = lines.index(_SEPARATOR)
    prompt = "\n".join(lines[:split]).strip()
    response = "\n".join(lines[split + 1 :]).strip()
    if not prompt or not response:
        raise InputError(
            "a prompt and a response separated by '---' need text on both sides",
            field="content",
        )
    return [(Role.USER, prompt), (Role.ASSISTANT, response)]
