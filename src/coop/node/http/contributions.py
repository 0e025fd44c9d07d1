"""Intake and the member's data rights: share a chat, see, export, rectify and withdraw it.

Bodies are decoded with prebuilt msgspec decoders (faster than the framework's own
binding, and every error names its field).  :class:`Intake` stores a validated
contribution; the web pages store theirs through the same object.  :class:`IngestRoute`
answers the hot route (a member's ``POST /api/v1/contributions`` of up to
:data:`INLINE_BODY_BYTES`) in front of the framework, with the same checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from typing import Any, Final

import msgspec
from litestar import Request, Response, delete, get, patch, post, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import FromPath

from coop.governance import Audience, Channel, Defaults, contributor_hash, parse_enum
from coop.node.contributions import repository as contrib
from coop.node.contributions import rights
from coop.node.contributions.repository import ClientInfo, Idempotency, MemberContribution, Stage
from coop.node.contributions.settled import insert_if_settled
from coop.node.contributions.submission import (
    ContributionRequest,
    EditRequest,
    IngestRequest,
    Submission,
    build_submission,
)
from coop.node.errors import InputError, NotFoundError, PayloadTooLargeError
from coop.node.http import answers as a
from coop.node.http.access import Access
from coop.node.http.clientaddr import client_ip
from coop.node.http.controller import AreaController, json_response, require_json
from coop.node.http.download import Download
from coop.node.http.openapi import AUTH, documented
from coop.node.http.problems import decode_body
from coop.node.ids import uuid7
from coop.node.intake.redaction import redact
from coop.node.logs import escape_controls
from coop.node.members import repository as members
from coop.node.members.accounts import Member, Role
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler
from coop.node.storage.store import Store

__all__ = [
    "CONTRIBUTION_DECODER",
    "INLINE_BODY_BYTES",
    "JSON_ENCODER",
    "MAX_PREVIEW_CHARS",
    "ContributionsController",
    "EventRequest",
    "Intake",
    "MeRequest",
    "PreviewRequest",
    "build_from_request",
    "idempotency",
    "stored_body",
]

CONTRIBUTION_DECODER: Final = msgspec.json.Decoder(ContributionRequest)
_INGEST: Final = msgspec.json.Decoder(IngestRequest)
_EDIT: Final = msgspec.json.Decoder(EditRequest)
_MAX_IDEMPOTENCY_KEY: Final = 200
# The redaction preview is for one message: as long as a message may be, and no longer.
MAX_PREVIEW_CHARS: Final = 100_000
_GET_HEAD: Final = [HttpMethod.GET, HttpMethod.HEAD]


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class MeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What a member may change of their account through the API (each field optional)."""

    announce: bool | None = None  # may the co-op's microblog and feed announce my released records


class EventRequest(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    stage: str
    count: int = 1


_PREVIEW: Final = msgspec.json.Decoder(PreviewRequest)
_EVENT: Final = msgspec.json.Decoder(EventRequest)
_ME: Final = msgspec.json.Decoder(MeRequest)
_REPORTABLE: Final = frozenset({Stage.ELIGIBLE, Stage.CAPTURED, Stage.PROMPT_SHOWN})
# A body up to this size is made into a submission on the event loop (a 4 KB chat takes
# ~60 us, 64 KB ~1 ms): handing it to a thread costs more than that in wake-ups and GIL
# hand-offs.  A larger one (an export of up to the body limit) is parsed in a thread.
INLINE_BODY_BYTES: Final = 64 * 1024
_ENTROPY_BYTES: Final = 4096
JSON_ENCODER: Final = msgspec.json.Encoder()


def client_info(request: Request[Any, Any, Any]) -> ClientInfo:
    """The client's address and User-Agent, for the security log."""
    agent = request.headers.get("user-agent")
    # The security log is read by people: no control character from a client reaches it.
    return ClientInfo(
        ip=client_ip(request), user_agent=None if agent is None else escape_controls(agent[:256])
    )


def idempotency(request: Request[Any, Any, Any], scope: str, body: bytes) -> Idempotency | None:
    """The request's Idempotency-Key (if any) in ``scope``, bound to the body's digest."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip().strip('"')
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InputError(
            f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} printable characters",
            field="Idempotency-Key",
        )
    return Idempotency(scope=scope, key=key, request_sha256=hashlib.sha256(body).hexdigest())


class Intake:
    """Stores validated contributions, and wakes the pipeline when one is new."""

    def __init__(
        self, store: Store, *, salt: bytes, clock: Callable[[], int], poke: Callable[[], None]
    ) -> None:
        self._store = store
        self._salt = salt
        self._clock = clock
        self._poke = poke
        self._entropy = b""
        self._taken = 0

    def _uid(self) -> str:
        """A new uid; its random bits come from the OS in 4 KB draws, not one system call a request
        (a call that releases the GIL, which the event loop then waits to get back)."""
        start = self._taken
        if start + 10 > len(self._entropy):
            self._entropy, start = os.urandom(_ENTROPY_BYTES), 0
        self._taken = start + 10
        return uuid7(rand=self._entropy[start : start + 10])

    async def add(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        submission: Submission,
        idem: Idempotency | None,
        *,
        settings_version: int | None = None,
    ) -> contrib.InsertResult:
        """A member's contribution: the hot path, written many at a time with whatever else arrives.

        With ``settings_version`` (the collective settings the submission's defaults came from),
        it is stored only if those settings are still in force when its group commits; else
        :class:`SettingsChangedError` (build it again on the current settings).
        """
        item = contrib.NewContribution(
            self._uid(), member, submission, self._clock(), idem, client_info(request)
        )
        result: contrib.InsertResult
        if settings_version is None:
            result = await self._store.writer.run_gathered("intake", contrib.insert_contributions, item)
        else:
            result = await self._store.writer.run_gathered(
                "intake-settled", insert_if_settled, (settings_version, item)
            )
        if result.created:
            self._poke()
        return result

    async def add_external(
        self,
        request: Request[Any, Any, Any],
        *,
        provider: str,
        user_id: str,
        name: str | None,
        submission: Submission,
        idem: Idempotency | None,
    ) -> contrib.InsertResult:
        """An integration user's contribution; their member row is made in the same transaction."""
        uid, now, client = self._uid(), self._clock(), client_info(request)
        result = await self._store.awrite(
            lambda c: contrib.insert_external_contribution(
                c,
                provider=provider,
                external_id=user_id,
                name=name,
                salt=self._salt,
                uid=uid,
                submission=submission,
                now=now,
                idempotency=idem,
                client=client,
            )
        )
        if result.created:
            self._poke()
        return result


def stored_body(result: contrib.InsertResult, notices: tuple[str, ...]) -> dict[str, object]:
    return {
        "uid": result.uid,
        "state": result.state,
        "created": result.created,
        "notices": notices,
        "links": {"self": f"/api/v1/contributions/{result.uid}"},
    }


def _stored(result: contrib.InsertResult, notices: tuple[str, ...]) -> Response[bytes]:
    return json_response(
        stored_body(result, notices),
        status=201 if result.created else 200,
        headers={"Location": f"/api/v1/contributions/{result.uid}"},
    )


def build_from_request(
    node: Node,
    data: ContributionRequest | IngestRequest,
    *,
    channel: Channel,
    member: Member,
    defaults: Defaults | None = None,
) -> tuple[Submission, tuple[str, ...]]:
    """:meth:`Node.build_submission` for a body ``decode_body`` read whole (repeated keys refused);
    ``defaults`` are the current settings' unless given."""
    return build_submission(
        data,
        channel=channel,
        username=member.name,
        pseudonym=None,  # the member's stored default, settled when the contribution is stored
        defaults=node.intake_defaults() if defaults is None else defaults,
        terms_version=node.config.node.terms_version,
        limits=node.limits,
        max_note_chars=node.config.limits.max_note_chars,
        body_checked=True,
    )


async def _build_sized(
    node: Node, data: ContributionRequest | IngestRequest, body: bytes, *, channel: Channel, member: Member
) -> tuple[Submission, tuple[str, ...]]:
    """:func:`_build` on the event loop for a small body, in a thread for a large one."""
    if len(body) <= INLINE_BODY_BYTES:
        return build_from_request(node, data, channel=channel, member=member)
    return await asyncio.to_thread(build_from_request, node, data, channel=channel, member=member)


class ContributionsController(AreaController):
    """Sharing chats (members and integrations) and each member's rights over what they shared."""

    @post(
        "/api/v1/contributions",
        status_code=201,
        operation_class=documented(
            a.Stored,
            body=ContributionRequest,
            status=201,
            also=(200,),
            problems=(*AUTH, 409),
            idempotent=True,
        ),
    )
    async def contribute(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        intake: NamedDependency[Intake],
    ) -> Response[bytes]:
        """Share one chat. Returns 201 only once it is safely stored."""
        member = access.member(request)
        require_json(request)
        body = await request.body()
        data = decode_body(CONTRIBUTION_DECODER, body)
        # Parsing an export of up to the body limit is CPU work: a large one off the event loop.
        submission, notices = await _build_sized(node, data, body, channel=Channel.API, member=member)
        idem = idempotency(request, f"m{member.id}", body)
        return _stored(await intake.add(request, member, submission, idem), notices)

    @post(
        "/api/v1/contributions/ingest",
        status_code=201,
        operation_class=documented(
            a.Stored, body=IngestRequest, status=201, also=(200,), problems=(*AUTH, 409), idempotent=True
        ),
    )
    async def ingest(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        intake: NamedDependency[Intake],
    ) -> Response[bytes]:
        """A chat shared from Open WebUI by an integration on behalf of its user.

        The user's member row is created in the same transaction as the
        contribution: a refused request keeps nothing about them.
        """
        integration = access.integration(request)
        require_json(request)
        body = await request.body()
        data = decode_body(_INGEST, body)
        if not data.user.id.strip():
            raise InputError("user.id must not be empty", field="user.id")
        chash = contributor_hash(node.salt, "openwebui", data.user.id)
        shown = (data.user.name or "").strip() or None
        provisional = Member(
            id=0, name=shown or "", role=Role.MEMBER, provider="openwebui", contributor_hash=chash
        )
        submission, notices = await _build_sized(
            node, data, body, channel=Channel.OPENWEBUI, member=provisional
        )
        idem = idempotency(request, f"i{integration.id}:{chash}", body)
        result = await intake.add_external(
            request,
            provider="openwebui",
            user_id=data.user.id,
            name=data.user.name,
            submission=submission,
            idem=idem,
        )
        return _stored(result, notices)

    @get("/api/v1/me", sync_to_thread=False, operation_class=documented(a.MeView, problems=AUTH))
    def me(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        member = access.member(request)
        announce = node.store.read(lambda c: members.announces(c, member.id))
        return json_response({"name": member.name, "role": member.role, "announce": announce})

    @patch("/api/v1/me", operation_class=documented(a.MeView, body=MeRequest, problems=AUTH))
    async def update_me(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """Change my choices: ``announce`` (may the microblog and the feed announce my released
        records; posts already out are deleted at the next publish when unticked)."""
        member = access.member(request)
        require_json(request)
        data = decode_body(_ME, await request.body())
        chosen = data.announce

        announce = await node.store.awrite(lambda c: members.choose_announce(c, member.id, chosen))
        return json_response({"name": member.name, "role": member.role, "announce": announce})

    @get(
        "/api/v1/me/contributions",
        sync_to_thread=False,
        operation_class=documented(list[MemberContribution], problems=AUTH),
    )
    def my_contributions(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        member = access.member(request)
        return json_response(node.store.read(lambda c: contrib.list_member_contributions(c, member.id)))

    @route(
        "/api/v1/me/contributions.jsonl",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=("application/jsonl",), problems=AUTH),
    )
    def my_export(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Download:
        """Every contribution of mine, as JSON lines (data portability)."""
        member = access.member(request)
        lines = node.store.read(lambda c: list(rights.iter_member_records(c, member.id)))
        return Download(
            b"".join(lines),
            media_type="application/jsonl",
            filename="my-contributions.jsonl",
            disposition="attachment",
            headers={"Cache-Control": "private, no-store"},
        )

    @get(
        "/api/v1/contributions/{uid:str}",
        sync_to_thread=False,
        operation_class=documented(a.ContributionShown, problems=(*AUTH, 404)),
    )
    def contribution(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        uid: FromPath[str],
    ) -> Response[bytes]:
        member = access.member(request)
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or (detail.member_id != member.id and not member.is_admin):
            raise NotFoundError(f"no contribution {uid} of yours", field="uid")
        audience = Audience.MEMBER if detail.member_id == member.id else Audience.ADMIN
        if not contrib.shown_to(detail.view, audience).carries_content:
            return json_response({"contribution": detail.view, "submission": None, "record": None})
        return json_response(
            {"contribution": detail.view, "submission": detail.submission, "record": detail.record}
        )

    @patch(
        "/api/v1/contributions/{uid:str}",
        operation_class=documented(a.Edited, body=EditRequest, problems=(*AUTH, 404, 409)),
    )
    async def edit(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        scheduler: NamedDependency[Scheduler],
        uid: FromPath[str],
    ) -> Response[bytes]:
        """Rectify: before release in place; after release as a new record (the old one tombstoned)."""
        member = access.member(request)
        require_json(request)
        data = decode_body(_EDIT, await request.body())
        new_uid, state, notices = await asyncio.to_thread(node.edit, member, uid, data, uuid7())
        scheduler.poke()
        return json_response(
            {
                "uid": new_uid,
                "state": state,
                "replaces": uid if new_uid != uid else None,
                "notices": notices,
            }
        )

    @delete(
        "/api/v1/contributions/{uid:str}",
        status_code=200,
        operation_class=documented(a.Withdrawn, problems=(*AUTH, 404, 409)),
    )
    async def withdraw(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        scheduler: NamedDependency[Scheduler],
        uid: FromPath[str],
    ) -> Response[bytes]:
        """Erase: out of the waiting room at once; excluded from every future release."""
        member = access.member(request)
        now = node.now()
        target = None if member.is_admin else member
        state = await node.store.awrite(
            lambda c: rights.withdraw_contribution(c, uid=uid, member=target, now=now)
        )
        # Committed: the tombstone is pending, and the scheduler revises the served releases soon.
        scheduler.poke()
        return json_response({"uid": uid, "state": state})

    @post(
        "/api/v1/redact/preview",
        status_code=200,
        operation_class=documented(a.Preview, body=PreviewRequest, problems=AUTH),
    )
    async def preview(
        self, request: Request[Any, Any, Any], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """What the redactor would replace in a text, with the spans it found."""
        access.member(request)
        require_json(request)
        data = decode_body(_PREVIEW, await request.body())
        if len(data.text) > MAX_PREVIEW_CHARS:
            raise PayloadTooLargeError(
                f"text is {len(data.text)} characters; the preview takes at most {MAX_PREVIEW_CHARS}",
                field="text",
            )
        result = await asyncio.to_thread(redact, data.text)  # CPU work: off the event loop
        return json_response({"text": result.text, "hits": result.hits, "counts": result.counts()})

    @post(
        "/api/v1/metrics/events",
        status_code=202,
        operation_class=documented(a.EventsAccepted, body=EventRequest, status=202, problems=AUTH),
    )
    async def events(
        self, request: Request[Any, Any, Any], node: NamedDependency[Node], access: NamedDependency[Access]
    ) -> Response[bytes]:
        """An integration reports stages the node cannot see (eligible chats, prompts shown)."""
        access.integration(request)
        require_json(request)
        data = decode_body(_EVENT, await request.body())
        channel = parse_enum(Channel, data.channel, field="channel")
        stage = parse_enum(Stage, data.stage, field="stage")
        if stage not in _REPORTABLE:
            raise InputError("only eligible, captured and prompt_shown may be reported", field="stage")
        if not 1 <= data.count <= 100_000:
            raise InputError("count must be between 1 and 100000", field="count")
        now = node.now()
        await node.store.awrite(
            lambda c: contrib.bump_stage(c, now=now, channel=channel.value, stage=stage, n=data.count)
        )
        return json_response({"accepted": data.count}, status=202)
