"""
title: Share to co-op
author: Co-op Flywheel
version: 0.1.0
license: Apache-2.0
required_open_webui_version: 0.5.0
description: Share this chat, up to this answer, with your data co-op. You consent first, then choose the label (good or fail) and the licence; your ratings go with it.
"""

# Open WebUI reads the docstring above as front matter (`key: value` lines only), so
# the explanation lives here instead.
#
# An Action function: Open WebUI shows a "Share to co-op" button under each answer and
# calls `Action.action` with the branch of the chat up to that answer.  The member
# confirms the co-op's terms, picks a label, a licence and an optional note; the chat
# then goes to the co-op node's `POST /api/v1/contributions/ingest` with the
# integration's API key.  Nothing is sent before the member has confirmed every dialog.
#
# Standard library plus pydantic only (Open WebUI always has pydantic): HTTP goes
# through `urllib.request` in a worker thread, so the file runs unchanged in any Open
# WebUI version, whatever httpx or aiohttp it ships.  Three small requests a click do
# not need a connection pool.

import asyncio
import hashlib
import http.client
import inspect
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, Field

__all__ = [
    "Action",
    "NodeClient",
    "NodeProblemError",
    "NodeUnreachableError",
    "ShareError",
    "chat_object",
    "consent_message",
    "dialog_answer",
    "idempotency_key",
    "parse_label",
    "parse_licence",
    "share_messages",
]

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[Any]]

CHANNEL: Final = "openwebui"
USER_AGENT: Final = "coop-openwebui-share/0.1.0"
_PROBLEM_JSON: Final = "application/problem+json"
_MAX_RESPONSE_BYTES: Final = 1 << 20
_LABEL_TRIES: Final = 3
_LABELS: Final = {"good": "good", "fail": "fail", "bad": "fail", "👍": "good", "👎": "fail"}
# The co-op's licences as exact SPDX ids; a member may type them in any case.  Anything
# else goes to the node as typed, which refuses it naming the licences it knows.
_LICENCES: Final = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0")
# What sharing means, by the co-op's scope for the chat ({coop}, {what} filled in).
_SCOPE_MEANING: Final = {
    "public": "{coop} may publish {what} in its open dataset, under the licence you choose next,",
    "federation": "{coop} may share {what} with its partner co-ops, under the licence you choose next,",
    "node": "{coop} keeps {what} to itself and never publishes it; it uses it under the licence you choose next,",
}
_ANY_SCOPE: Final = "{coop} may use {what} under the licence you choose next,"
_ANNOTATION_KEYS: Final = ("rating", "reason", "comment", "tags")


# -- errors ------------------------------------------------------------------------------


class ShareError(Exception):
    """Why a chat was not shared; ``str()`` is the sentence shown to the member.

    ShareError
     ├── NodeUnreachableError  (no answer from the node: address, network, timeout)
     └── NodeProblemError      (the node answered with an RFC 9457 problem)
    """


class NodeUnreachableError(ShareError):
    """The node did not answer."""


class NodeProblemError(ShareError):
    """The node refused the request; ``detail`` and ``field`` come from its problem document."""

    def __init__(self, status: int, detail: str, *, field: str | None = None, kind: str = "") -> None:
        self.status = status
        self.detail = detail
        self.field = field
        self.kind = kind  # the problem ``type``, like "/problems/invalid-field"
        super().__init__(f"{detail} (field: {field})" if field else detail)

    @classmethod
    def from_response(cls, status: int, document: Mapping[str, Any]) -> "NodeProblemError":
        detail = document.get("detail") or document.get("title") or f"the co-op node answered HTTP {status}"
        field = document.get("field")
        return cls(
            status,
            str(detail),
            field=str(field) if field else None,
            kind=str(document.get("type") or ""),
        )


# -- the node's HTTP API -----------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it would carry the API key and the chat to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class NodeClient:
    """The three calls the action makes to the co-op node; urllib errors become ShareErrors here."""

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        url = url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ShareError(
                "Share to co-op is not set up: an admin must set the node URL (http:// or https://) "
                "in the function's Valves."
            )
        if not api_key.strip():
            raise ShareError(
                "Share to co-op is not set up: an admin must set the API key "
                "(from `coop integration add`) in the function's Valves."
            )
        self.url = url
        self._key = api_key.strip()
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())

    async def node_info(self) -> dict[str, Any]:
        """Who the co-op is: its name, current terms version and defaults (public)."""
        return await self._call("GET", "/api/v1/node", authorized=False)

    async def report_prompt_shown(self) -> None:
        """Count one share prompt in the node's metrics; best effort, failures are ignored."""
        event = {"channel": CHANNEL, "stage": "prompt_shown", "count": 1}
        try:
            await self._call("POST", "/api/v1/metrics/events", event)
        except ShareError as exc:
            log.info("the co-op node did not count the share prompt: %s", exc)

    async def ingest(self, body: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Share one chat; a retry with the same key and body answers with the first contribution."""
        return await self._call(
            "POST", "/api/v1/contributions/ingest", body, headers={"Idempotency-Key": idempotency_key}
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        authorized: bool = True,
    ) -> dict[str, Any]:
        sent = {"Accept": f"application/json, {_PROBLEM_JSON}", "User-Agent": USER_AGENT, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            sent["Content-Type"] = "application/json"
        if authorized:
            sent["Authorization"] = f"Bearer {self._key}"
        status, raw = await asyncio.to_thread(self._exchange, method, path, data, sent)
        try:
            document = json.loads(raw) if raw.strip() else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        if not 200 <= status < 300:
            raise NodeProblemError.from_response(status, document)
        return document

    def _exchange(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        # The URL's scheme was checked to be http or https in __init__.
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return int(response.status), response.read(_MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(_MAX_RESPONSE_BYTES)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NodeUnreachableError(f"the co-op node at {self.url} did not answer ({reason})") from exc


# -- what is shared (pure: values in, values out) ------------------------------------------


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _annotation(value: object) -> dict[str, Any] | None:
    """The member's rating of a message, as the node reads it (rating, reason, comment, tags)."""
    if not isinstance(value, Mapping):
        return None
    kept = {key: value[key] for key in _ANNOTATION_KEYS if value.get(key) not in (None, "", [])}
    return kept or None


def _walk(history: Mapping[str, Any], current: str | None) -> list[dict[str, Any]]:
    """The branch of a stored chat that ends at ``current``, root first."""
    branch: list[dict[str, Any]] = []
    seen: set[str] = set()
    while isinstance(current, str) and current not in seen and isinstance(history.get(current), Mapping):
        seen.add(current)
        message = dict(history[current])
        branch.append({**message, "id": current})
        current = message.get("parentId")
    branch.reverse()
    return branch


def share_messages(body: Mapping[str, Any], stored: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The conversation to share: the branch Open WebUI passed, linked by ``parentId``.

    Open WebUI's button sends only id, role, content and timestamp of each message, so
    a message's ``annotation`` (the member's thumbs up or down, reason and comment) and
    ``model`` come from the stored chat, by message id, when the body lacks them.
    Sources, usage and files are not shared.
    """
    tree = _mapping((stored or {}).get("history"))
    history = _mapping(tree.get("messages"))
    listed = body.get("messages")
    if not isinstance(listed, list) or not listed:
        current = body.get("id") or tree.get("currentId")
        listed = _walk(history, current if isinstance(current, str) else None)
    answered_by = _text(body.get("model"))
    out: list[dict[str, Any]] = []
    ids: set[str] = set()
    parent: str | None = None
    for index, message in enumerate(listed):
        if not isinstance(message, Mapping):
            continue
        given = message.get("id")
        kept = _mapping(history.get(given)) if isinstance(given, str) else {}
        mid = given if isinstance(given, str) and given and given not in ids else f"message-{index}"
        role = message.get("role") or kept.get("role")
        item: dict[str, Any] = {
            "id": mid,
            "parentId": parent,
            "role": role,
            "content": message.get("content", kept.get("content")),
        }
        timestamp = message.get("timestamp", kept.get("timestamp"))
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            item["timestamp"] = timestamp
        model = _text(message.get("model")) or _text(kept.get("model"))
        if model is None and role == "assistant":
            model = answered_by
        if model is not None:
            item["model"] = model
        annotation = _annotation(message.get("annotation")) or _annotation(kept.get("annotation"))
        if annotation is not None:
            item["annotation"] = annotation
        out.append(item)
        ids.add(mid)
        parent = mid
    return out


def chat_object(
    body: Mapping[str, Any], stored: Mapping[str, Any] | None, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """An Open WebUI chat holding only the shared branch (``history`` ending at the last message)."""
    models: list[str] = []
    for source in (body.get("models"), (stored or {}).get("models"), [body.get("model")]):
        if isinstance(source, list):
            models += [m for m in source if isinstance(m, str) and m and m not in models]
    chat: dict[str, Any] = {}
    chat_id = _text(body.get("chat_id"))
    if chat_id is not None:
        chat["id"] = chat_id
    title = _text((stored or {}).get("title"))
    if title is not None:
        chat["title"] = title
    chat["models"] = models
    chat["history"] = {"messages": {m["id"]: m for m in messages}, "currentId": messages[-1]["id"]}
    return chat


def idempotency_key(chat_id: str | None, message_id: str, label: str) -> str:
    """The same answer of the same chat shared with the same label is one contribution."""
    digest = hashlib.sha256("\x1f".join((chat_id or "", message_id, label)).encode("utf-8")).hexdigest()
    return f"openwebui-share-{digest}"


def parse_label(text: str) -> str | None:
    """``good`` or ``fail`` from what the member typed; None when it is neither."""
    return _LABELS.get(text.strip().lower())


def parse_licence(text: str, default: str) -> str:
    """An SPDX id in its exact spelling; the default when the box was left empty."""
    text = text.strip()
    if not text:
        return default
    return next((known for known in _LICENCES if known.lower() == text.lower()), text)


def dialog_answer(result: object) -> str | None:
    """What an input dialog returned: the text, "" when confirmed empty, None when cancelled.

    Open WebUI answers the text typed, ``True`` for an empty box, ``False`` for Cancel;
    its documentation also shows ``{"value": ...}``, which is read the same way.
    """
    if isinstance(result, Mapping):
        result = result.get("value")
    if result is True:
        return ""
    if isinstance(result, str):
        return result.strip()
    return None


def consent_message(*, coop: str, terms: str, scope: str, count: int) -> str:
    """The consent dialog: what sharing means, the terms version, and that it can be undone."""
    what = f"this conversation (the {count} messages up to this answer)"
    use = _SCOPE_MEANING.get(scope, _ANY_SCOPE).format(coop=coop, what=what)
    terms_text = f"the co-op's terms, version {terms}" if terms else "the co-op's current terms"
    return (
        f"{use} after removing the personal details it finds. "
        f"By continuing you agree to {terms_text}; you can withdraw the chat later by asking the co-op."
    )


# -- the member's side: Open WebUI's dialogs and notices -----------------------------------------


class _Member:
    """Open WebUI's ``__event_emitter__`` and ``__event_call__``, tolerant of their absence."""

    def __init__(self, emit: Emit | None, call: Emit | None) -> None:
        self._emit = emit
        self.call = call

    async def status(self, description: str, *, done: bool = False) -> None:
        if self._emit is not None:
            await self._emit({"type": "status", "data": {"description": description, "done": done}})

    async def notify(self, kind: str, content: str) -> None:
        if self._emit is not None:
            await self._emit({"type": "notification", "data": {"type": kind, "content": content}})

    async def fail(self, reason: str) -> None:
        await self.notify("error", reason)
        await self.status("Not shared.", done=True)

    async def confirm(self, title: str, message: str) -> bool:
        result = await self._ask({"type": "confirmation", "data": {"title": title, "message": message}})
        # OK answers True, or the text left in Open WebUI's shared dialog box; Cancel answers False.
        return dialog_answer(result) is not None

    async def ask(self, title: str, message: str, placeholder: str, value: str = "") -> str | None:
        data = {"title": title, "message": message, "placeholder": placeholder, "value": value}
        return dialog_answer(await self._ask({"type": "input", "data": data}))

    async def _ask(self, event: dict[str, Any]) -> object:
        if self.call is None:
            return None
        try:
            return await self.call(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dialog closed with Escape never answers: Open WebUI times out
            log.info("a share dialog ended without an answer: %s", type(exc).__name__)
            return None


@dataclass(frozen=True)
class _Choices:
    label: str
    licence: str
    note: str | None
    correction: str | None


# -- the action ----------------------------------------------------------------------------


class Action:
    class Valves(BaseModel):
        node_url: str = Field(
            default="",
            description="The co-op node's address, like https://coop.example.org (no path).",
        )
        api_key: str = Field(
            default="",
            description="The integration key printed by `coop integration add DIR openwebui` (coopkey_...).",
        )
        default_license: str = Field(
            default="",
            description="The licence offered first: CC0-1.0, CC-BY-4.0 or CC-BY-SA-4.0. Empty: the co-op's default.",
        )
        default_ai_use: str = Field(
            default="",
            description="AI-use preference sent with every chat, like 'train-ai=y, search=y'. Empty: the co-op's default.",
        )
        default_scope: str = Field(
            default="",
            description="How far shared chats may travel: node, federation or public. Empty: the co-op's default.",
        )
        default_attribution: str = Field(
            default="",
            description="How members are credited: username, anonymous or pseudonym:NAME. Empty: the co-op's default.",
        )
        terms_version: str = Field(
            default="",
            description="The terms version members agree to. Empty: the co-op's current terms, read from the node.",
        )
        timeout: float = Field(default=15.0, gt=0, description="Seconds to wait for the co-op node.")

    def __init__(self) -> None:
        self.valves = self.Valves()

    async def action(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __event_emitter__: Emit | None = None,
        __event_call__: Emit | None = None,
    ) -> dict[str, Any] | None:
        """Ask the member, then share the chat up to the clicked answer; None when nothing was shared."""
        member = _Member(__event_emitter__, __event_call__)
        user = __user__ if isinstance(__user__, Mapping) else {}
        user_id = _text(str(user.get("id") or ""))
        if user_id is None:
            await member.fail("Not shared: sign in to share chats with the co-op.")
            return None
        if member.call is None:
            await member.fail("Not shared: this button needs Open WebUI's chat page to ask you first.")
            return None
        valves = self.valves
        try:
            node = NodeClient(valves.node_url, valves.api_key, valves.timeout)
            await member.status("Reaching the co-op…")
            info = await node.node_info()
        except ShareError as exc:
            await member.fail(f"Not shared: {exc}")
            return None

        stored = await _stored_chat(_text(body.get("chat_id")), user_id)
        messages = share_messages(body, stored)
        if not messages:
            await member.fail("Not shared: this chat has no messages.")
            return None
        defaults = _mapping(info.get("defaults"))
        coop = _text(info.get("name")) or "the co-op"
        terms = _text(valves.terms_version) or _text(info.get("terms_version")) or ""
        scope = _text(valves.default_scope) or _text(defaults.get("scope")) or ""
        licence = _text(valves.default_license) or _text(defaults.get("license")) or _LICENCES[-1]
        rating = (messages[-1].get("annotation") or {}).get("rating")
        label_hint = "good" if _positive(rating) else "fail" if _negative(rating) else ""

        await member.status(f"Sharing with {coop}: waiting for your answers…")
        reported = asyncio.create_task(node.report_prompt_shown())
        try:
            consent = consent_message(coop=coop, terms=terms, scope=scope, count=len(messages))
            choices = await self._choose(member, coop, consent, licence, label_hint)
        finally:
            await reported
        if choices is None:
            await member.status("Not shared.", done=True)
            return None

        request = {
            "user": _user(user, user_id),
            "label": choices.label,
            "consent": True,
            "chat": chat_object(body, stored, messages),
            "license": choices.licence,
            "ai_use": _text(valves.default_ai_use),
            "scope": _text(valves.default_scope),
            "attribution": _text(valves.default_attribution),
            "note": choices.note,
            "correction": choices.correction,
            "terms_version": terms or None,
            "prompt_shown": True,
        }
        request = {key: value for key, value in request.items() if value is not None}
        key = idempotency_key(_text(body.get("chat_id")), messages[-1]["id"], choices.label)
        await member.status(f"Sharing with {coop}…")
        try:
            shared = await node.ingest(request, idempotency_key=key)
        except NodeProblemError as exc:
            if exc.kind.endswith("/idempotency-conflict"):
                await member.fail(
                    f"Not shared again: you already shared this answer as '{choices.label}' "
                    f"with other choices. ({exc})"
                )
            else:
                await member.fail(f"Not shared: {exc}")
            return None
        except ShareError as exc:
            await member.fail(f"Not shared: {exc}")
            return None

        uid, state = str(shared.get("uid", "")), str(shared.get("state", ""))
        where = state.replace("_", " ")
        created = shared.get("created") is not False
        said = "Shared" if created else "Already shared"
        notices = [n for n in shared.get("notices") or [] if isinstance(n, str)]
        extra = f" Note: {'; '.join(notices)}." if notices else ""
        await member.notify(
            "success",
            f"{said} with {coop} as {uid} ({where}). To withdraw it, ask the co-op, quoting this id.{extra}",
        )
        await member.status(f"{said} with {coop}: {uid} ({where}).", done=True)
        return {"uid": uid, "state": state, "created": created}

    async def _choose(
        self, member: _Member, coop: str, consent: str, licence: str, label_hint: str
    ) -> _Choices | None:
        """The dialogs, in order: consent, label, licence, an optional note; None once one is cancelled."""
        if not await member.confirm(f"Share this chat with {coop}?", consent):
            return None
        label = None
        prompt = "Type good if the answer was right and helpful, or fail if it was not."
        for _ in range(_LABEL_TRIES):
            answer = await member.ask("Good or fail?", prompt, "good or fail", label_hint)
            if answer is None:
                return None
            label = parse_label(answer)
            if label is not None:
                break
            prompt = f"'{answer[:40]}' is neither: type good or fail."
        if label is None:
            await member.notify("error", "Not shared: the label must be good or fail.")
            return None
        answer = await member.ask(
            "Licence",
            f"Others may reuse the chat under CC0-1.0 (no conditions), CC-BY-4.0 (with credit) or "
            f"CC-BY-SA-4.0 (with credit, sharing alike). {coop} suggests {licence}.",
            licence,
            licence,
        )
        if answer is None:
            return None
        chosen = parse_licence(answer, licence)
        if label == "fail":
            answer = await member.ask(
                "What should it have said?",
                "Optional: the right answer, or what went wrong. Leave it empty to skip.",
                "the right answer",
            )
        else:
            answer = await member.ask(
                "Anything to add?",
                "Optional: a note for the people who will learn from this chat. Leave it empty to skip.",
                "a note",
            )
        if answer is None:
            return None
        text = answer or None
        return _Choices(
            label=label,
            licence=chosen,
            note=text if label == "good" else None,
            correction=text if label == "fail" else None,
        )


def _positive(rating: object) -> bool:
    return isinstance(rating, int | float) and not isinstance(rating, bool) and rating > 0


def _negative(rating: object) -> bool:
    return isinstance(rating, int | float) and not isinstance(rating, bool) and rating < 0


def _user(user: Mapping[str, Any], user_id: str) -> dict[str, str]:
    """Who shares: the id (the node's key for the member) and a name to suggest a handle.

    Nothing else of the user is sent: the node has no use for an e-mail address.
    """
    out = {"id": user_id}
    name = _text(user.get("name"))
    if name is not None:
        out["name"] = name[:256]  # the node takes a name of at most 256 characters
    return out


async def _stored_chat(chat_id: str | None, user_id: str) -> dict[str, Any] | None:
    """The chat as Open WebUI stores it, for the ratings the button does not pass; None elsewhere."""
    if chat_id is None or chat_id.startswith("local:"):  # a temporary chat is never stored
        return None
    try:
        from open_webui.models.chats import Chats  # only inside Open WebUI
    except ImportError:
        return None
    try:
        # Synchronous in older Open WebUI versions, a coroutine in newer ones.
        row = Chats.get_chat_by_id_and_user_id(chat_id, user_id)
        if inspect.isawaitable(row):
            row = await row
    except Exception as exc:  # noqa: BLE001 - Open WebUI's internals vary by version; the body alone still shares
        log.warning("could not read the stored chat; sharing it without its ratings: %s", type(exc).__name__)
        return None
    chat = getattr(row, "chat", None)
    if not isinstance(chat, Mapping):
        return None
    return {**chat, "title": getattr(row, "title", None) or chat.get("title")}
