"""The chats of a file to contribute: an Open WebUI export split into its chats, each read on
its own, and the member's choice among them (``--chat-id``, ``--pick``).

Light on purpose: click and the standard library only, so that ``coop --help`` starts fast; the
intake parsers are imported inside the functions that use them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from coop.node.cli.exits import UsageError

__all__ = ["Chat", "select_chats", "split_export"]


@dataclass(frozen=True)
class Chat:
    """One document to send: a whole upload, or one chat of an export, with what shows it.

    A chat of an export that cannot be read is kept with its ``problem`` (refused, not sent);
    one without messages is ``empty`` (skipped: not a contribution).
    """

    document: bytes
    chat_id: str | None = None
    title: str | None = None
    place: str = "the chat"  # where it is in the file: "chat 3" of an array, "line 3" of NDJSON
    problem: str | None = None
    empty: bool = False

    @property
    def shown(self) -> str:
        return self.chat_id or self.place


def _unbounded() -> Any:
    """Parse limits that never refuse: the node applies its own (configurable) limits to each
    chat and answers 413 or 422 for that chat alone, so the CLI's copy of the built-in defaults
    must not refuse what the node would take, nor stop a whole export for one chat."""
    from coop.node.intake.chat import Limits

    huge = sys.maxsize
    return Limits(
        max_messages=huge, max_message_chars=huge, max_chats=huge, max_tags=huge, max_tag_chars=huge
    )


def split_export(data: bytes, fmt: Any) -> list[Chat]:
    """One document per chat, so that each chat of an export becomes its own contribution.

    An Open WebUI export (a JSON array or NDJSON) is split and each chat read on its own: one
    that cannot be read is kept with its problem, one without messages is marked empty.  A
    file that is not an export at all, or one chat that cannot be read, is an InputError (here,
    before anything is sent).  Anything else is one document.
    """
    from coop.node.errors import InputError
    from coop.node.intake.chat import IntakeFormat
    from coop.node.intake.formats import parse_content
    from coop.node.intake.openwebui import export_rows, parse_row

    limits = _unbounded()
    if fmt is not IntakeFormat.OPENWEBUI:
        parse_content(data, fmt, limits=limits)  # fail here, with the parser's message
        return [Chat(data)]
    rows = export_rows(data, limits=limits)
    if len(rows) == 1:
        # One chat: a problem with it is the command's error.  The row of a one-chat array
        # (Open WebUI's per-chat download), else the file as it is, is sent.
        where, raw = rows[0]
        document = raw if where.startswith("content[") else data
        (parsed,) = parse_content(document, fmt, limits=limits)
        return [Chat(document, parsed.source_id, parsed.title or _first_line(parsed.messages))]
    chats = []
    for n, (where, raw) in enumerate(rows, start=1):
        place = where if where.startswith("line") else f"chat {n}"
        document = raw.strip()
        try:
            row = parse_row(document, field=where, limits=limits)
        except InputError as exc:
            problem = f"{exc.message} [{exc.field}]" if exc.field else exc.message
            chats.append(Chat(document, place=place, problem=problem))
            continue
        if row is None:
            chats.append(Chat(document, _row_id(document), place=place, empty=True))
        else:
            title = row.title or _first_line(row.messages)
            chats.append(Chat(document, row.source_id, title, place=place))
    return chats


def _row_id(raw: bytes) -> str | None:
    """The id of a chat row without messages (so that --chat-id can name it)."""
    import msgspec

    try:
        row = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(row, dict):
        return None
    chat = row.get("chat")
    found = row.get("id") or (chat.get("id") if isinstance(chat, dict) else None)
    return found if isinstance(found, str) else None


def _first_line(messages: Any) -> str | None:
    for message in messages:
        text = str(message.content).strip()
        if text:
            return text.splitlines()[0][:80]
    return None


def select_chats(chats: list[Chat], chat_ids: tuple[str, ...], pick: bool) -> list[Chat]:
    from coop.node.errors import InputError

    if chat_ids:
        known = {chat.chat_id for chat in chats}
        missing = [c for c in chat_ids if c not in known]
        if missing and not (len(chats) == 1 and chats[0].chat_id is None):
            raise InputError(f"no chat with id {', '.join(missing)} in the file", field="--chat-id")
        if len(chats) == 1 and chats[0].chat_id is None:
            return chats  # one chat without an id of its own: the node decides
        wanted = set(chat_ids)
        return [chat for chat in chats if chat.chat_id in wanted]
    if not pick:
        return chats
    if not sys.stdin.isatty():
        raise UsageError("--pick asks on a terminal: use --chat-id ID (repeatable) instead", field="--pick")
    for n, chat in enumerate(chats, start=1):
        shown = chat.title or (
            "(no messages)" if chat.empty else "(cannot be read)" if chat.problem else "(untitled)"
        )
        sys.stderr.write(f"{n:>4}  {shown}  [{chat.chat_id or '-'}]\n")
    answer = click.prompt("share which chats? (e.g. 1,3-5 or all)", default="all", err=True)
    return [chats[i] for i in _numbers(answer, len(chats))]


def _numbers(answer: str, count: int) -> list[int]:
    """Zero-based indexes from '1,3-5' or 'all'."""
    if answer.strip().lower() in ("all", "*"):
        return list(range(count))
    chosen: list[int] = []
    for part in answer.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise UsageError(f"{part!r} is not a chat number or range", field="--pick")
        for n in range(int(first), int(last or first) + 1):
            if not 1 <= n <= count:
                raise UsageError(f"there is no chat {n} (1 to {count})", field="--pick")
            if n - 1 not in chosen:
                chosen.append(n - 1)
    return chosen
