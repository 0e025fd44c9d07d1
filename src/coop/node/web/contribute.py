"""The contribute page: paste a chat or upload an Open WebUI export, pick a chat, preview, share.

The form works without JavaScript, one step per post (``upload``, ``pick``,
``preview``, ``submit``); the live preview is the one JSON endpoint the page's
script calls.  A shared chat goes through the same request validation as the API.
"""

from __future__ import annotations

import asyncio
import secrets
from functools import partial
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.response import Template

from coop.governance import Channel, GovernanceError, parse_ai_use
from coop.governance.canonical import canonical_bytes, sha256_hex
from coop.node.contributions.repository import Idempotency
from coop.node.contributions.submission import content_bytes
from coop.node.contributions.uploads import discard_upload, load_upload, save_upload
from coop.node.errors import ForbiddenError, InputError, NodeError
from coop.node.http.problems import refuse_duplicate_keys
from coop.node.intake.chat import ParsedChat
from coop.node.intake.formats import parse_content, select_chat
from coop.node.intake.redaction import redact
from coop.node.members.accounts import Member
from coop.node.members.sessions import WebSession
from coop.node.web.forms import AI_CHOICES, LICENCES, SCOPES, ContributeForm, preview_chat
from coop.node.web.sessions import check_csrf
from coop.node.web.site import WebSite, ai_canonical, done, first_words

__all__ = ["ContributePages"]

_UPLOAD_LIFETIME: Final = 3600
_ENCODER: Final = msgspec.json.Encoder()

Site = NamedDependency[WebSite]
Session = NamedDependency[WebSession]


def _utf16(text: str, index: int) -> int:
    """A Python offset as a JavaScript string offset (UTF-16 code units)."""
    return len(text[:index].encode("utf-16-le")) // 2


def blank_form(site: WebSite, member: Member) -> ContributeForm:
    """The form as a member first sees it: the co-op's defaults, their pseudonym, a fresh retry key."""
    form = ContributeForm.defaults(
        site.node.intake_defaults(),
        pseudonym=site.node.default_pseudonym(member),
        form_id=secrets.token_urlsafe(16),
    )
    return msgspec.structs.replace(form, ai_use=ai_canonical(form.ai_use))


def contribute_page(
    site: WebSite,
    request: Request[Any, Any, Any],
    session: WebSession,
    form: ContributeForm,
    *,
    status: int = 200,
    chats: list[dict[str, Any]] | None = None,
    preview: Any = None,
    **extra: Any,
) -> Template:
    choices = [(ai_canonical(v), n, h) for v, n, h in AI_CHOICES]
    if form.ai_use and form.ai_use not in {c[0] for c in choices}:
        described = parse_ai_use(form.ai_use).value.describe() if form.ai_use else ""
        choices.insert(0, (form.ai_use, f"As stated: {form.ai_use}", described))
    return site.page(
        request,
        session,
        "contribute.html",
        status=status,
        form=form,
        chats=chats or [],
        preview=preview,
        licences=LICENCES,
        ai_choices=choices,
        scopes=SCOPES,
        threshold=site.config.pipeline.quarantine_pii_threshold,
        **extra,
    )


def _save_upload(site: WebSite, member: Member, data: bytes) -> str:
    upload_id = secrets.token_urlsafe(18)
    now = site.node.now()
    site.node.store.write(
        lambda c: save_upload(
            c, upload_id=upload_id, member_id=member.id, data=data, now=now, lifetime=_UPLOAD_LIFETIME
        )
    )
    return upload_id


def _load_upload(site: WebSite, member: Member, upload_id: str) -> bytes:
    now = site.node.now()
    data = site.node.store.read(lambda c: load_upload(c, upload_id=upload_id, member_id=member.id, now=now))
    if data is None:
        raise InputError("your uploaded export has expired: upload it again", field="export")
    return data


def _parse(site: WebSite, data: bytes, *, field: str) -> list[ParsedChat]:
    try:
        return parse_content(data, None, limits=site.node.limits)
    except NodeError as exc:
        if exc.field is not None and exc.field.startswith("content") and field != "content":
            exc.field = field
        raise


def _chat_choices(chats: list[ParsedChat]) -> list[dict[str, Any]]:
    return [
        {
            "id": chat.source_id or "",
            "title": chat.title or first_words(chat.messages, 80) or "(untitled)",
            "messages": len(chat.messages),
            "model": chat.model,
        }
        for chat in chats
    ]


def _content_of(site: WebSite, member: Member, form: ContributeForm) -> bytes:
    if form.upload:
        return _load_upload(site, member, form.upload)
    if not form.text.strip():
        raise InputError("paste the conversation, or upload an Open WebUI export", field="content")
    return _ENCODER.encode(form.text)


def _chosen_chat(site: WebSite, member: Member, form: ContributeForm) -> ParsedChat:
    data = _content_of(site, member, form)
    chats = _parse(site, content_bytes(data), field="export" if form.upload else "content")
    return select_chat(chats, form.chat_id or None)


class ContributePages(Controller):
    """Sharing a chat: for signed-in members."""

    path = "/"

    @get("/contribute", sync_to_thread=False)
    def contribute(self, request: Request[Any, Any, Any], site: Site, session: Session) -> Template:
        """The form, pre-filled from the co-op's defaults and any URL parameters (a link from elsewhere)."""
        params = {k: v for k, v in request.query_params.items() if k in ContributeForm.__struct_fields__}
        params.pop("upload", None)
        params.pop("form_id", None)
        form = blank_form(site, session.member).with_values(params, checkboxes=False)
        if form.ai_use:
            form = msgspec.structs.replace(form, ai_use=ai_canonical(form.ai_use))
        return contribute_page(site, request, session, form)

    @post("/contribute", status_code=200)
    async def contribute_post(
        self, request: Request[Any, Any, Any], site: Site, session: Session
    ) -> Response[Any]:
        member = session.member
        node = site.node
        values = await site.posted(request, session)
        step = str(values.get("step") or "submit")
        fields = {k: v for k, v in values.items() if isinstance(v, str)}
        form = blank_form(site, member).with_values(fields, checkboxes=step != "pick")
        try:
            if step == "upload":
                upload = values.get("export")
                if not isinstance(upload, UploadFile) or not upload.filename:
                    raise InputError("choose an export file to upload first", field="export")
                data = await upload.read()
                if not data.strip():
                    raise InputError("the file is empty", field="export")
                chats = await asyncio.to_thread(partial(_parse, site, data, field="export"))
                upload_id = await asyncio.to_thread(_save_upload, site, member, data)
                form = msgspec.structs.replace(form, upload=upload_id, text="")
                if len(chats) > 1:
                    return contribute_page(site, request, session, form, chats=_chat_choices(chats))
                chosen = chats[0]
            else:
                chosen = await asyncio.to_thread(_chosen_chat, site, member, form)
            if form.upload:
                form = msgspec.structs.replace(
                    form,
                    chat_id=chosen.source_id or "",
                    chat_title=chosen.title or first_words(chosen.messages, 80) or "(untitled)",
                )
                if step in ("upload", "pick") and chosen.feedback and not form.label:
                    # The member's own thumbs in Open WebUI suggest the label.
                    rating = chosen.feedback[-1].rating
                    form = msgspec.structs.replace(
                        form, label="good" if rating > 0 else "fail" if rating < 0 else ""
                    )
            if step != "submit":
                preview = await asyncio.to_thread(  # redacts every message: off the event loop
                    partial(preview_chat, chosen, note=form.note, correction=form.correction)
                )
                return contribute_page(site, request, session, form, preview=preview)
            content = _content_of(site, member, form)
            wire = form.request(
                content, terms_version=str(values.get("terms_version") or site.config.node.terms_version)
            )
            submission, _notices = await asyncio.to_thread(
                partial(node.build_submission, wire, channel=Channel.WEB, member=member)
            )
            idem = None
            if form.form_id:
                digest = sha256_hex(canonical_bytes(wire))
                idem = Idempotency(scope=f"w{member.id}", key=form.form_id[:200], request_sha256=digest)
            result = await site.store_contribution(request, member, submission, idem)
            if form.upload:
                # Shared: the raw export (unredacted, every chat in it) is no longer needed.
                await node.store.awrite(partial(discard_upload, member_id=member.id, upload_id=form.upload))
        except (NodeError, GovernanceError) as exc:
            problem = site.with_error(exc)
            status = problem.pop("status")
            return contribute_page(site, request, session, form, status=status, **problem)
        site.poke()
        return done("/me", "shared", f"#c-{result.uid}")

    @post("/contribute/preview", status_code=200)
    async def live_preview(
        self, request: Request[Any, Any, Any], visitor: NamedDependency[WebSession | None]
    ) -> Response[bytes]:
        """The live preview's JSON: the spans the redactor would replace, as JavaScript offsets."""
        if visitor is None:
            raise ForbiddenError("sign in to preview", field="session")
        if not check_csrf(visitor, request.headers.get("x-csrf-token")):
            raise ForbiddenError("reload the page: this form is out of date", field="X-CSRF-Token")
        body = await request.body()
        try:
            data = msgspec.json.decode(body, type=dict[str, str])
        except msgspec.MsgspecError:
            raise InputError('send {"text": "..."}', field="text") from None
        refuse_duplicate_keys(body)
        text = data.get("text", "")[:200_000]
        result = await asyncio.to_thread(redact, text)  # CPU work: off the event loop
        hits = [
            {"start": _utf16(text, h.start), "end": _utf16(text, h.end), "type": h.type.value}
            for h in result.hits
        ]
        return Response(
            _ENCODER.encode({"hits": hits, "counts": result.counts()}), media_type="application/json"
        )
