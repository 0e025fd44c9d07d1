"""The node's HTTP API (litestar): intake, the member's data rights, admin review, releases; and its web pages.

Bodies are decoded here with prebuilt msgspec decoders (faster than the
framework's own binding, and every error names its field); all errors leave
as RFC 9457 problem details through :mod:`coop.node.http.problems`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Litestar, Request, Response, delete, get, patch, post, route
from litestar.enums import HttpMethod
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath

from coop.governance import Audience, Channel, contributor_hash, parse_enum
from coop.governance.envelope import Envelope
from coop.node.channels.base import release_statement
from coop.node.contributions import repository as contrib
from coop.node.contributions.repository import (
    BatchReport,
    ClientInfo,
    ContributionView,
    Decision,
    Idempotency,
    Stage,
)
from coop.node.contributions.retention import RetentionItem
from coop.node.contributions.submission import ContributionRequest, EditRequest, IngestRequest, Submission
from coop.node.errors import (
    BusyError,
    InputError,
    MediaTypeError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
)
from coop.node.http import answers as a
from coop.node.http.auth import Authenticator
from coop.node.http.clientaddr import TrustedProxies, client_ip
from coop.node.http.download import Download
from coop.node.http.evaluation import evaluation_handlers
from coop.node.http.federation import federation_handlers
from coop.node.http.governance import governance_handlers
from coop.node.http.head import HeadAsGet
from coop.node.http.headers import access_log, credentials_not_cached, security_headers
from coop.node.http.openapi import ADMIN, AUTH, DocsPage, documented
from coop.node.http.params import release_version
from coop.node.http.problems import decode_body, exception_handlers
from coop.node.http.ratelimit import RateLimiter
from coop.node.ids import uuid7
from coop.node.intake.redaction import redact
from coop.node.logs import escape_controls
from coop.node.members.accounts import Member, Role
from coop.node.metrics import MetricsReport, prometheus, prometheus_jobs
from coop.node.releases.cut import (
    ReleaseSummary,
    get_federated_release,
    get_release,
    list_federated_releases,
    list_releases,
    robots_txt,
)
from coop.node.releases.revision import withheld
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler
from coop.node.storage.store import ensure_external_member
from coop.node.web.pages import web_handlers
from coop.node.web.render import template_config

__all__ = ["create_app"]

log = logging.getLogger("coop.http")

_JSON: Final = "application/json"
_ENCODER: Final = msgspec.json.Encoder()
_CONTRIBUTION: Final = msgspec.json.Decoder(ContributionRequest)
_INGEST: Final = msgspec.json.Decoder(IngestRequest)
_EDIT: Final = msgspec.json.Decoder(EditRequest)
_MAX_IDEMPOTENCY_KEY: Final = 200
# The redaction preview is for one message: as long as a message may be, and no longer.
MAX_PREVIEW_CHARS: Final = 100_000


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class EventRequest(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    stage: str
    count: int = 1


_PREVIEW: Final = msgspec.json.Decoder(PreviewRequest)
_EVENT: Final = msgspec.json.Decoder(EventRequest)
_REPORTABLE: Final = frozenset({Stage.ELIGIBLE, Stage.CAPTURED, Stage.PROMPT_SHOWN})


def _json(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_ENCODER.encode(value), status_code=status, media_type=_JSON, headers=headers)


def _require_json(request: Request[Any, Any, Any]) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise MediaTypeError(
            f"send the body as {_JSON} (got {media or 'no Content-Type'})", field="Content-Type"
        )


def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InputError(
            f"node.trusted_proxies: {text!r} is not an IP address", field="node.trusted_proxies"
        ) from None


def _client(request: Request[Any, Any, Any]) -> ClientInfo:
    agent = request.headers.get("user-agent")
    # The security log is read by people: no control character from a client reaches it.
    return ClientInfo(
        ip=client_ip(request), user_agent=None if agent is None else escape_controls(agent[:256])
    )


def _idempotency(request: Request[Any, Any, Any], scope: str, body: bytes) -> Idempotency | None:
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


def _release_version(text: str) -> int:
    return release_version(text, field="version")


_MEDIA: Final = {
    "jsonl": "application/jsonl",
    "parquet": "application/vnd.apache.parquet",
    "md": "text/markdown",
    "json": "application/json",
}


_GET_HEAD: Final = [HttpMethod.GET, HttpMethod.HEAD]
_FILE_TYPES: Final = (*_MEDIA.values(), "application/octet-stream")


def _release_file(folder: Path, summary: ReleaseSummary, path: str) -> Download:
    """A file the release lists (nothing else, whatever the path), with its bucket's Content-Usage.

    Its strong ETag is the SHA-256 the release lists for it (SHA256SUMS: size and mtime).
    """
    relative = path.lstrip("/")
    digests = {f.path: f.sha256 for f in summary.files}
    if relative not in digests and relative != "SHA256SUMS":
        raise NotFoundError(f"release {summary.name} has no file {relative!r}", field="path")
    headers: dict[str, str] = {}
    bucket = summary.bucket(relative.split("/", 1)[0])
    if bucket is not None and bucket.content_usage:
        headers["Content-Usage"] = bucket.content_usage
    return Download(
        folder / summary.label / relative,  # the revision the row names: never a half-swapped one
        filename=Path(relative).name,
        media_type=_MEDIA.get(relative.rsplit(".", 1)[-1], "application/octet-stream"),
        headers=headers,
        etag=digests.get(relative),
    )


def create_app(
    node: Node, *, background: bool = True, access: bool = False, scheduler: Scheduler | None = None
) -> Litestar:
    """The ASGI app for one node; ``background`` runs the pipeline scheduler with it, ``access`` logs each response.

    ``scheduler`` (a test's, with a fake clock) replaces the one made here.
    """
    cfg = node.config
    auth = Authenticator(node.store)
    ip_limit = RateLimiter(per_minute=cfg.rate_limit.per_ip_per_minute, burst=cfg.rate_limit.per_ip_burst)
    token_limit = RateLimiter(
        per_minute=cfg.rate_limit.per_token_per_minute, burst=cfg.rate_limit.per_token_burst
    )
    scheduler = scheduler or Scheduler(node)
    trusted = frozenset(filter(None, (_canonical_ip(a) for a in cfg.node.trusted_proxies)))

    def limit_token(key: str) -> None:
        wait = token_limit.allow(key, time.monotonic())
        if wait:
            raise RateLimitedError(
                f"too many requests with this credential; retry in {wait} s", retry_after=wait
            )

    async def limit_ip(request: Request[Any, Any, Any]) -> None:
        host = client_ip(request) or "unknown"
        wait = ip_limit.allow(host, time.monotonic())
        if wait:
            raise RateLimitedError(f"too many requests from {host}; retry in {wait} s", retry_after=wait)

    def signed_in(request: Request[Any, Any, Any], *, admin: bool = False) -> Member:
        member = auth.member(request, admin=admin)
        limit_token(f"m{member.id}")
        return member

    # -- public ---------------------------------------------------------------

    @get("/api/v1/node", sync_to_thread=False, operation_class=documented(a.NodeInfo))
    def node_info() -> Response[bytes]:
        """Who this node is and the defaults a contribution gets."""
        return _json(
            {
                "node_id": node.identity.node_id,
                "fingerprint": node.identity.fingerprint,
                "name": cfg.node.name,
                "terms_version": cfg.node.terms_version,
                "defaults": node.settings().settings.defaults,
                "limits": cfg.limits,
            }
        )

    @get("/healthz", sync_to_thread=False, operation_class=documented(a.Health, also=(503,)))
    def healthz() -> Response[bytes]:
        """Alive and able to read its database (a storage fault answers 500, as problem details);
        503 naming the background job (pipeline, gossip, ...) that has not succeeded for too long."""
        (schema,) = node.store.read(lambda c: c.execute("PRAGMA user_version").fetchone())
        settings = node.settings().settings
        jobs = scheduler.health()
        stale = [j.job for j in jobs if j.stale]
        return _json(
            {
                "status": "stale" if stale else "ok",
                "schema": schema,
                "embargo": settings.embargo.on,
                "quality_freeze": settings.quality_freeze,
                "stale": stale,
                "jobs": {j.job: j for j in jobs},
                # Peers whose clock is off from ours (this node's minus theirs): federation
                # refuses beyond a few minutes, so say it before it does.
                "clock_skew": {p["node_id"]: p["text"] for p in node.federation.skewed_peers()},
                # Why this node issues no manifests (its own chain was forked), or null.
                "federation_halted": node.federation.own_fork(),
            },
            status=503 if stale else 200,
        )

    @get("/metrics", sync_to_thread=False, media_type="text/plain", operation_class=documented())
    def metrics_text() -> Response[str]:
        text = prometheus(node.metrics()) + prometheus_jobs(scheduler.health())
        return Response(text, media_type="text/plain; version=0.0.4")

    @get("/api/v1/metrics", sync_to_thread=False, operation_class=documented(MetricsReport))
    def metrics_json() -> Response[bytes]:
        return _json(node.metrics())

    @get("/robots.txt", sync_to_thread=False, media_type="text/plain", operation_class=documented())
    def robots() -> Response[str]:
        releases = node.store.read(list_releases)
        fallback = node.settings().settings.defaults.ai_use
        text = robots_txt(cfg.node.name, releases, fallback=fallback, disallow=("/api/",))
        return Response(text, media_type="text/plain")

    @get(
        ["/api/v1/releases", "/releases"],
        sync_to_thread=False,
        operation_class=documented(list[ReleaseSummary]),
    )
    def releases_index() -> Response[bytes]:
        return _json(node.store.read(list_releases))

    @get(
        ["/api/v1/releases/{version:str}", "/releases/{version:str}"],
        sync_to_thread=False,
        operation_class=documented(ReleaseSummary, problems=(404,)),
    )
    def release_info(version: FromPath[str]) -> Response[bytes]:
        number = _release_version(version)
        return _json(node.store.read(lambda c: get_release(c, number)))

    @route(
        "/releases/{version:str}/release.dsse.json",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(Envelope, problems=(404,)),
    )
    def release_statement_file(version: FromPath[str]) -> Download:
        """The release summary (every file's SHA-256) signed by this node's key, as channels ship it."""
        number = _release_version(version)
        summary = node.store.read(lambda c: get_release(c, number))
        return Download(release_statement(summary, node.seed), media_type="application/json")

    def serving(summary: ReleaseSummary, path: str, *, federated: bool) -> None:
        """A bucket's files wait while a withdrawn record they may hold awaits its revision."""
        if summary.bucket(path.lstrip("/").split("/", 1)[0]) is None:
            return  # the card, checksums, tombstones: no record content
        reason = node.store.read(lambda c: withheld(c, summary, federated=federated))
        if reason is not None:
            raise BusyError(
                f"release {summary.name} is being revised ({reason}: a record was withdrawn); "
                "retry in a few seconds",
                field="path",
            )

    @route(
        "/releases/{version:str}/{path:path}",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=_FILE_TYPES, problems=(404, 503)),
    )
    def release_file(version: FromPath[str], path: FromPath[str]) -> Download:
        number = _release_version(version)
        summary = node.store.read(lambda c: get_release(c, number))
        serving(summary, path, federated=False)
        return _release_file(node.data.releases_path, summary, path)

    @get("/releases/federated", sync_to_thread=False, operation_class=documented(list[ReleaseSummary]))
    def federated_index() -> Response[bytes]:
        return _json(node.store.read(list_federated_releases))

    @get(
        "/releases/federated/{version:str}",
        sync_to_thread=False,
        operation_class=documented(ReleaseSummary, problems=(404,)),
    )
    def federated_info(version: FromPath[str]) -> Response[bytes]:
        number = _release_version(version)
        return _json(node.store.read(lambda c: get_federated_release(c, number)))

    @route(
        "/releases/federated/{version:str}/{path:path}",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=_FILE_TYPES, problems=(404, 503)),
    )
    def federated_file(version: FromPath[str], path: FromPath[str]) -> Download:
        number = _release_version(version)
        summary = node.store.read(lambda c: get_federated_release(c, number))
        serving(summary, path, federated=True)
        return _release_file(node.data.releases_path / "federated", summary, path)

    # -- members ------------------------------------------------------------------

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
    async def contribute(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Share one chat. Returns 201 only once it is safely stored."""
        member = signed_in(request)
        _require_json(request)
        body = await request.body()
        data = decode_body(_CONTRIBUTION, body)
        # Parsing an export of up to the body limit is CPU work: off the event loop.
        submission, notices = await asyncio.to_thread(
            node.build_submission, data, channel=Channel.API, member=member
        )
        return await _store(request, member, submission, notices, f"m{member.id}", body)

    async def store_contribution(
        request: Request[Any, Any, Any],
        member: Member | Callable[[sqlite3.Connection], Member],
        submission: Submission,
        idem: Idempotency | None,
    ) -> contrib.InsertResult:
        """Store a validated contribution; ``member`` may be resolved inside the same transaction."""
        uid = uuid7()
        now = node.now()
        client = _client(request)

        result: contrib.InsertResult
        if isinstance(member, Member):
            # The hot path: written many at a time with whatever else is arriving.
            item = contrib.NewContribution(uid, member, submission, now, idem, client)
            result = await node.store.writer.run_gathered("intake", contrib.insert_contributions, item)
        else:
            resolve = member

            def write(conn: sqlite3.Connection) -> contrib.InsertResult:
                # The integration's user is created in the contribution's own transaction.
                who = resolve(conn)
                return contrib.insert_contribution(
                    conn, uid=uid, member=who, submission=submission, now=now, idempotency=idem, client=client
                )

            result = await node.store.awrite(write)
        if result.created:
            scheduler.poke()
        return result

    async def _store(
        request: Request[Any, Any, Any],
        member: Member | Callable[[sqlite3.Connection], Member],
        submission: Submission,
        notices: tuple[str, ...],
        idempotency_scope: str,
        body: bytes,
    ) -> Response[bytes]:
        idem = _idempotency(request, idempotency_scope, body)
        result = await store_contribution(request, member, submission, idem)
        return _json(
            {
                "uid": result.uid,
                "state": result.state,
                "created": result.created,
                "notices": notices,
                "links": {"self": f"/api/v1/contributions/{result.uid}"},
            },
            status=201 if result.created else 200,
            headers={"Location": f"/api/v1/contributions/{result.uid}"},
        )

    @post(
        "/api/v1/contributions/ingest",
        status_code=201,
        operation_class=documented(
            a.Stored, body=IngestRequest, status=201, also=(200,), problems=(*AUTH, 409), idempotent=True
        ),
    )
    async def ingest(request: Request[Any, Any, Any]) -> Response[bytes]:
        """A chat shared from Open WebUI by an integration on behalf of its user.

        The user's member row is created in the same transaction as the
        contribution: a refused request keeps nothing about them.
        """
        integration = auth.integration(request)
        limit_token(f"i{integration.id}")
        _require_json(request)
        body = await request.body()
        data = decode_body(_INGEST, body)
        if not data.user.id.strip():
            raise InputError("user.id must not be empty", field="user.id")
        chash = contributor_hash(node.salt, "openwebui", data.user.id)
        shown = (data.user.name or "").strip() or None
        provisional = Member(
            id=0, name=shown or "", role=Role.MEMBER, provider="openwebui", contributor_hash=chash
        )
        submission, notices = await asyncio.to_thread(
            node.build_submission, data, channel=Channel.OPENWEBUI, member=provisional
        )
        now = node.now()

        def member(conn: sqlite3.Connection) -> Member:
            return ensure_external_member(
                conn,
                provider="openwebui",
                external_id=data.user.id,
                name=data.user.name,
                email=None,  # nothing reads it: bounded when decoded, never kept
                salt=node.salt,
                now=now,
            )

        return await _store(request, member, submission, notices, f"i{integration.id}:{chash}", body)

    @get("/api/v1/me", sync_to_thread=False, operation_class=documented(a.MeView, problems=AUTH))
    def me(request: Request[Any, Any, Any]) -> Response[bytes]:
        member = signed_in(request)
        return _json({"name": member.name, "role": member.role})

    @get(
        "/api/v1/me/contributions",
        sync_to_thread=False,
        operation_class=documented(list[ContributionView], problems=AUTH),
    )
    def my_contributions(request: Request[Any, Any, Any]) -> Response[bytes]:
        member = signed_in(request)
        return _json(node.store.read(lambda c: contrib.list_member_contributions(c, member.id)))

    @route(
        "/api/v1/me/contributions.jsonl",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=("application/jsonl",), problems=AUTH),
    )
    def my_export(request: Request[Any, Any, Any]) -> Download:
        """Every contribution of mine, as JSON lines (data portability)."""
        member = signed_in(request)
        lines = node.store.read(lambda c: list(contrib.iter_member_records(c, member.id)))
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
    def contribution(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[bytes]:
        member = signed_in(request)
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or (detail.member_id != member.id and not member.is_admin):
            raise NotFoundError(f"no contribution {uid} of yours", field="uid")
        audience = Audience.MEMBER if detail.member_id == member.id else Audience.ADMIN
        if not contrib.shown_to(detail.view, audience).carries_content:
            return _json({"contribution": detail.view, "submission": None, "record": None})
        return _json({"contribution": detail.view, "submission": detail.submission, "record": detail.record})

    @patch(
        "/api/v1/contributions/{uid:str}",
        operation_class=documented(a.Edited, body=EditRequest, problems=(*AUTH, 404, 409)),
    )
    async def edit(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[bytes]:
        """Rectify: before release in place; after release as a new record (the old one tombstoned)."""
        member = signed_in(request)
        _require_json(request)
        data = decode_body(_EDIT, await request.body())
        new_uid, state, notices = await asyncio.to_thread(node.edit, member, uid, data, uuid7())
        scheduler.poke()
        return _json(
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
    async def withdraw(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[bytes]:
        """Erase: out of the waiting room at once; excluded from every future release."""
        member = signed_in(request)
        now = node.now()
        target = None if member.is_admin else member
        state = await node.store.awrite(
            lambda c: contrib.withdraw_contribution(c, uid=uid, member=target, now=now)
        )
        # Committed: the tombstone is pending, and the scheduler revises the served releases soon.
        scheduler.poke()
        return _json({"uid": uid, "state": state})

    @post(
        "/api/v1/redact/preview",
        status_code=200,
        operation_class=documented(a.Preview, body=PreviewRequest, problems=AUTH),
    )
    async def preview(request: Request[Any, Any, Any]) -> Response[bytes]:
        """What the redactor would replace in a text, with the spans it found."""
        signed_in(request)
        _require_json(request)
        data = decode_body(_PREVIEW, await request.body())
        if len(data.text) > MAX_PREVIEW_CHARS:
            raise PayloadTooLargeError(
                f"text is {len(data.text)} characters; the preview takes at most {MAX_PREVIEW_CHARS}",
                field="text",
            )
        result = await asyncio.to_thread(redact, data.text)  # CPU work: off the event loop
        return _json({"text": result.text, "hits": result.hits, "counts": result.counts()})

    @post(
        "/api/v1/metrics/events",
        status_code=202,
        operation_class=documented(a.EventsAccepted, body=EventRequest, status=202, problems=AUTH),
    )
    async def events(request: Request[Any, Any, Any]) -> Response[bytes]:
        """An integration reports stages the node cannot see (eligible chats, prompts shown)."""
        integration = auth.integration(request)
        limit_token(f"i{integration.id}")
        _require_json(request)
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
        return _json({"accepted": data.count}, status=202)

    # -- admins ----------------------------------------------------------------------

    @get(
        "/api/v1/admin/waiting-room",
        sync_to_thread=False,
        operation_class=documented(list[ContributionView], problems=ADMIN),
    )
    def waiting_room(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        return _json(node.store.read(lambda c: contrib.list_by_state(c, contrib.S.WAITING)))

    @get(
        "/api/v1/admin/quarantine",
        sync_to_thread=False,
        operation_class=documented(list[ContributionView], problems=ADMIN),
    )
    def quarantine(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        return _json(node.store.read(lambda c: contrib.list_by_state(c, contrib.S.QUARANTINED)))

    @get(
        "/api/v1/admin/quarantine/{uid:str}",
        sync_to_thread=True,  # it redacts every message: off the event loop
        operation_class=documented(a.QuarantineItem, problems=(*ADMIN, 404)),
    )
    def quarantine_item(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[bytes]:
        """A quarantined entry as submitted, with what the redactor found in each message."""
        signed_in(request, admin=True)
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or detail.view.state is not contrib.S.QUARANTINED:
            raise NotFoundError(f"no quarantined contribution {uid}", field="uid")
        hits = []
        if detail.submission is not None:
            hits = [redact(m.content).hits for m in detail.submission.chat.messages]
        return _json({"contribution": detail.view, "submission": detail.submission, "hits": hits})

    @post(
        "/api/v1/admin/quarantine/{uid:str}/{decision:str}",
        status_code=200,
        operation_class=documented(a.Decided, problems=(*ADMIN, 404, 409, 422)),
    )
    async def decide(
        request: Request[Any, Any, Any], uid: FromPath[str], decision: FromPath[str]
    ) -> Response[bytes]:
        admin = signed_in(request, admin=True)
        choice = parse_enum(Decision, decision, field="decision")
        state = await asyncio.to_thread(node.decide_quarantine, uid, choice, admin=admin.name)
        return _json({"uid": uid, "state": state, "decided_by": admin.name})

    @post(
        "/api/v1/admin/process",
        status_code=200,
        operation_class=documented(BatchReport, problems=(*ADMIN, 409)),
    )
    async def process(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        report = await asyncio.to_thread(node.process_pending)
        return _json(report)

    @post(
        "/api/v1/admin/releases",
        status_code=201,
        operation_class=documented(ReleaseSummary, status=201, problems=(*ADMIN, 409)),
    )
    async def release(request: Request[Any, Any, Any]) -> Response[bytes]:
        admin = signed_in(request, admin=True)
        summary = await asyncio.to_thread(node.cut_release, actor=admin.name)
        return _json(summary, status=201, headers={"Location": f"/releases/{summary.name}"})

    @get(
        "/api/v1/admin/retention",
        sync_to_thread=False,
        operation_class=documented(list[RetentionItem], problems=ADMIN),
    )
    def retention(request: Request[Any, Any, Any]) -> Response[bytes]:
        signed_in(request, admin=True)
        return _json(node.retention_report())

    web, html_error = web_handlers(node, store=store_contribution, poke=scheduler.poke)

    async def start() -> None:
        if background:
            scheduler.start()

    async def stop() -> None:
        await scheduler.stop()

    app = Litestar(
        route_handlers=[
            node_info,
            healthz,
            metrics_text,
            metrics_json,
            robots,
            releases_index,
            release_info,
            release_statement_file,
            release_file,
            federated_index,
            federated_info,
            federated_file,
            contribute,
            ingest,
            me,
            my_contributions,
            my_export,
            contribution,
            edit,
            withdraw,
            preview,
            events,
            waiting_room,
            quarantine,
            quarantine_item,
            decide,
            process,
            release,
            retention,
            *governance_handlers(node, signed_in, _require_json),
            *federation_handlers(node, signed_in),
            *evaluation_handlers(node, signed_in),
            *web,
        ],
        before_request=limit_ip,
        exception_handlers=exception_handlers(html_error),
        template_config=template_config(),
        request_max_body_size=cfg.limits.max_body_bytes,
        on_startup=[start],
        on_shutdown=[stop],
        openapi_config=OpenAPIConfig(
            title=f"Co-op Flywheel node: {cfg.node.name}",
            version="1",
            path="/schema",
            render_plugins=[DocsPage()],  # served from the node: no CDN, no script
        ),
        logging_config=None,
        before_send=[security_headers, credentials_not_cached, *([access_log] if access else [])],
    )
    # Before routing, so every response (a 404 too) sees the client, scheme and host a trusted proxy names.
    app.asgi_handler = TrustedProxies(HeadAsGet(app.asgi_handler, app), trusted)
    return app
