"""The web pages: contribute, my data, admin, governance and the public catalogue.

Every page is rendered on the server and every form posts without
JavaScript.  A member signs in once with their token; the browser then keeps
a session cookie, and every form carries the session's CSRF token.  Errors
are the API's problem details, shown in words next to the field they name.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import msgspec
from litestar import Request, Response, get, post, route
from litestar.datastructures import Cookie, UploadFile
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.router import Router

from coop.governance import (
    Channel,
    Choice,
    GovernanceError,
    License,
    Scope,
    parse_ai_use,
    parse_enum,
)
from coop.node.collective.repository import Actor, last_changes, list_proposals, recent_entries
from coop.node.contributions import repository as contrib
from coop.node.contributions.repository import Decision, Idempotency, InsertResult
from coop.node.contributions.submission import ContributionState, Submission, content_bytes
from coop.node.errors import ForbiddenError, InputError, NodeError, NotFoundError
from coop.node.http.download import Download, static_file
from coop.node.http.params import whole_number
from coop.node.http.problems import HtmlRenderer, classify, refuse_duplicate_keys
from coop.node.intake.chat import ParsedChat
from coop.node.intake.formats import parse_content, select_chat
from coop.node.intake.redaction import redact
from coop.node.members.accounts import Member
from coop.node.releases import catalog
from coop.node.releases.cut import list_federated_releases, list_releases
from coop.node.runtime import Node
from coop.node.storage.store import member_by_token
from coop.node.storage.writer import scrub_after_commit
from coop.node.web.forms import (
    AI_CHOICES,
    LICENCES,
    SCOPES,
    ContributeForm,
    field_errors,
    preview_chat,
)
from coop.node.web.render import STATIC
from coop.node.web.sessions import (
    COOKIE,
    LIFETIME,
    LOGIN_COOKIE,
    LOGIN_LIFETIME,
    WebSession,
    check_csrf,
    check_login_token,
    end_session,
    find_session,
    login_token,
    start_session,
)

__all__ = ["StoreContribution", "web_handlers"]

StoreContribution = Callable[
    [Request[Any, Any, Any], Member, Submission, Idempotency | None], Awaitable[InsertResult]
]

_UPLOAD_LIFETIME: Final = 3600
_PROPOSALS_PER_PAGE: Final = 20
_MAX_PAGE: Final = 1_000_000  # a page number far past any catalogue, still a small SQL OFFSET
_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ENCODER: Final = msgspec.json.Encoder()

STATE_WORDS: Final = {
    ContributionState.WAITING.value: "Waiting to be checked",
    ContributionState.PROCESSING.value: "Being checked",
    ContributionState.ACCEPTED.value: "Accepted: in the next release",  # public scope (me.html words the others)
    ContributionState.RELEASED.value: "Released",
    ContributionState.QUARANTINED.value: "Held for an admin's review",
    ContributionState.REJECTED.value: "Not published (an admin decided)",
    ContributionState.DUPLICATE.value: "Already shared before",
    ContributionState.WITHDRAWN.value: "Withdrawn",
}

# What a finished action says on the page it lands on (codes, so no text is reflected from the URL).
_DONE: Final = {
    "shared": "Thank you: your chat is safely stored. It is checked for personal data next; "
    "its state below tells you where it is.",
    "withdrawn": (
        "Withdrawn. Its content is erased here, it is left out of every future release, and it is being "
        "removed from the releases this node serves; copies downloaded before cannot be recalled."
    ),
    "signed-in": "You are signed in.",
    "signed-out": "You are signed out.",
    "processed": "The waiting room was processed.",
    "released": "The release is cut and published.",
    "decided": "Decision recorded.",
    "embargo": "The embargo setting is changed.",
    "freeze": "The quality-freeze setting is changed.",
    "proposed": "Your proposal is open for votes.",
    "voted": "Your vote is counted.",
    "bounty": "The bounty is posted.",
    "bounty-closed": "The bounty is closed.",
}


class _SignInError(Exception):
    """The page needs a signed-in member: send them to the sign-in page and back."""


def _ai_canonical(value: str) -> str:
    # Strict: a typo stays as typed (and is refused with a suggestion when posted),
    # never canonicalised away into "no preference".
    try:
        return parse_ai_use(value, strict=True).value.to_header()
    except GovernanceError:
        return value


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` as browsers serialise an origin (default port left out), or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/me"
    return value


def _first_words(chat_messages: Any, limit: int = 280) -> str:
    for message in chat_messages:
        if message.role.value == "user":
            text = " ".join(message.content.split())
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return ""


def _utf16(text: str, index: int) -> int:
    """A Python offset as a JavaScript string offset (UTF-16 code units)."""
    return len(text[:index].encode("utf-16-le")) // 2


def web_handlers(
    node: Node,
    *,
    store: StoreContribution,
    poke: Callable[[], None],
) -> tuple[list[Router], HtmlRenderer]:
    """The page routes (the static files among them), and the renderer for error pages."""
    cfg = node.config

    # -- sessions and context ------------------------------------------------------

    def session_of(request: Request[Any, Any, Any]) -> WebSession | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        now = node.now()
        return node.store.read(lambda c: find_session(c, raw, now=now))

    def require(request: Request[Any, Any, Any], *, admin: bool = False) -> WebSession:
        session = session_of(request)
        if session is None:
            raise _SignInError
        if admin and not session.member.is_admin:
            raise ForbiddenError("only the co-op's admins may open this page", field="session")
        return session

    public_origin = _origin(cfg.node.public_url)
    public_https = cfg.node.public_url.lower().startswith("https://")

    def secure_cookies(request: Request[Any, Any, Any]) -> bool:
        """Cookies only over https: when the request came so, or the co-op's public URL is https
        (then a proxy without ``trusted_proxies`` cannot leave them unprotected)."""
        return public_https or request.url.scheme == "https"

    def same_origin(request: Request[Any, Any, Any], *, strict: bool) -> None:
        """Refuse a form another site sent: its Origin (or, without one, its Referer) must be ours.

        Ours is the request's own origin (behind a trusted proxy: the browser's ``https://host``)
        or ``node.public_url``'s.  ``Origin: null`` (a sandboxed frame, a data: URL) always fails;
        ``strict`` also fails a form with neither header (sign-in, which no session token guards).
        """
        ours = {_origin(f"{request.url.scheme}://{request.url.netloc}"), public_origin} - {None}
        origin = request.headers.get("origin")
        if origin is not None:
            if _origin(origin) not in ours:
                raise ForbiddenError("this form was sent from another site", field="Origin")
            return
        referer = request.headers.get("referer")
        if referer is not None:
            if _origin(referer) not in ours:
                raise ForbiddenError("this form was sent from another site", field="Referer")
        elif strict:
            raise ForbiddenError(
                "your browser did not say which site sent this form: sign in from this node's page",
                field="Origin",
            )

    async def posted(
        request: Request[Any, Any, Any], session: WebSession | None, *, signing_in: bool = False
    ) -> dict[str, Any]:
        """The form's fields; refuses a form from another site or an old session."""
        same_origin(request, strict=signing_in)
        form = await request.form()
        values: dict[str, Any] = {}
        for key, value in form.multi_items():
            values.setdefault(key, value)
        if session is not None and not check_csrf(session, values.get("csrf")):
            raise ForbiddenError(
                "this form is out of date (you may have signed in again): reload the page and send it again",
                field="csrf",
            )
        return values

    def context(request: Request[Any, Any, Any], session: WebSession | None, **values: Any) -> dict[str, Any]:
        done = request.query_params.get("done")
        base: dict[str, Any] = {
            "coop": cfg.node.name,
            "terms_version": cfg.node.terms_version,
            "member": None if session is None else session.member,
            "csrf": "" if session is None else session.csrf,
            "flash": _DONE.get(done or ""),
            "errors": [],
            "error_fields": defaultdict(bool),
            "errors_title": None,
            "path": request.url.path,
        }
        base.update(values)
        return base

    def page(
        request: Request[Any, Any, Any],
        session: WebSession | None,
        name: str,
        *,
        status: int = 200,
        cookies: list[Cookie] | None = None,
        private: bool = False,
        **values: Any,
    ) -> Template:
        return Template(
            template_name=name,
            context=context(request, session, **values),
            status_code=status,
            cookies=cookies,
            headers={"Cache-Control": "no-store"} if session is not None or private else None,
        )

    def with_error(
        exc: NodeError | GovernanceError,
    ) -> dict[str, Any]:
        status, _, title = classify(exc)
        errors, marked = field_errors(exc.field, exc.message)
        return {"errors": errors, "error_fields": marked, "errors_title": title, "status": status}

    def done(path: str, code: str, anchor: str = "") -> Redirect:
        sep = "&" if "?" in path else "?"
        return Redirect(f"{path}{sep}done={code}{anchor}", status_code=303)

    def html_error(request: Request[Any, Any, Any], problem: dict[str, Any]) -> Response[Any]:
        """The error page: the same problem details as the API, in words."""
        try:
            session = session_of(request)
        except NodeError:
            session = None
        errors, _ = field_errors(problem.get("field"), str(problem.get("detail", "")))
        return page(
            request,
            session,
            "error.html",
            status=int(problem.get("status", 500)),
            problem=problem,
            errors=errors,
            errors_title=problem.get("title"),
        )

    def sign_in_redirect(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)

    # -- public pages ----------------------------------------------------------------

    @get("/", sync_to_thread=False)
    def home(request: Request[Any, Any, Any]) -> Template:
        session = session_of(request)
        releases = node.store.read(list_releases)
        open_bounties = node.store.read(catalog.bounties)
        return page(
            request,
            session,
            "home.html",
            releases=releases,
            bounties=open_bounties,
            settings=node.settings().settings,
        )

    @get("/terms", sync_to_thread=False)
    def terms(request: Request[Any, Any, Any]) -> Template:
        custom = node.data.root / "terms.txt"
        paragraphs = (
            [p.strip() for p in custom.read_text(encoding="utf-8").split("\n\n") if p.strip()]
            if custom.is_file()
            else []
        )
        return page(
            request,
            session_of(request),
            "terms.html",
            paragraphs=paragraphs,
            defaults=node.settings().settings.defaults,
            threshold=cfg.pipeline.quarantine_pii_threshold,
        )

    @get("/faq", sync_to_thread=False)
    def faq(request: Request[Any, Any, Any]) -> Template:
        return page(
            request, session_of(request), "faq.html", licences=LICENCES, ai_choices=AI_CHOICES, scopes=SCOPES
        )

    @get("/datasets", sync_to_thread=False)
    def datasets(request: Request[Any, Any, Any]) -> Template:
        releases = list(reversed(node.store.read(list_releases)))
        federated = list(reversed(node.store.read(list_federated_releases)))
        return page(request, session_of(request), "datasets.html", releases=releases, federated=federated)

    @get("/datasets/{name:str}", sync_to_thread=False)
    def dataset(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
        federated = name.startswith("federated-")
        wanted = name.removeprefix("federated-")
        listing = node.store.read(list_federated_releases if federated else list_releases)
        found = next((r for r in listing if r.name == wanted), None)
        if found is None:
            raise NotFoundError(f"there is no release {name!r}", field="release")
        base = "/releases/federated" if federated else "/releases"
        return page(
            request, session_of(request), "dataset.html", release=found, base=base, federated=federated
        )

    @get("/browse", sync_to_thread=False)
    def browse(request: Request[Any, Any, Any]) -> Template:
        query = request.query_params
        number = whole_number(query.get("page") or "1", field="page", low=1, high=_MAX_PAGE)
        filters = catalog.SearchFilters(
            q=(query.get("q") or "")[:200],
            label=query.get("label") or "",
            license=query.get("license") or "",
            model=query.get("model") or "",
            tag=query.get("tag") or "",
            language=query.get("language") or "",
            page=number,
        )
        embargo = node.settings().settings.embargo
        results = node.store.read(lambda c: catalog.search(c, filters, embargo=embargo))
        facets = node.store.read(lambda c: catalog.facets(c, embargo=embargo))
        kept = {k: v for k, v in msgspec.structs.asdict(filters).items() if v and k != "page"}
        return page(
            request,
            session_of(request),
            "browse.html",
            filters=filters,
            results=results,
            facets=facets,
            kept=kept,
        )

    @get("/browse/{uid:str}", sync_to_thread=False)
    def record_page(request: Request[Any, Any, Any], uid: FromPath[str]) -> Template:
        embargo = node.settings().settings.embargo
        found = node.store.read(lambda c: catalog.record(c, uid, embargo=embargo))
        if found is None:
            raise NotFoundError(
                f"no published record {uid} (it may be withdrawn or under embargo)", field="uid"
            )
        return page(
            request,
            session_of(request),
            "record.html",
            record=found,
            usage=parse_ai_use(found.ai_use).value.describe() if found.ai_use else "No preference stated.",
        )

    @get("/leaderboards", sync_to_thread=False)
    def leaderboards(request: Request[Any, Any, Any]) -> Template:
        embargo = node.settings().settings.embargo
        boards = node.store.read(lambda c: catalog.leaderboards(c, embargo=embargo))
        return page(request, session_of(request), "leaderboards.html", boards=boards)

    @get("/bounties", sync_to_thread=False)
    def bounty_board(request: Request[Any, Any, Any]) -> Template:
        session = session_of(request)
        items = node.store.read(lambda c: catalog.bounties(c, include_closed=True))
        return page(request, session, "bounties.html", bounties=items)

    @get("/federation", sync_to_thread=False)
    def federation(request: Request[Any, Any, Any]) -> Template:
        session = session_of(request)
        return page(
            request,
            session,
            "federation.html",
            identity=node.identity,
            peers=node.federation.peers(),
            origins=node.federation.origins(),
        )

    @get("/governance", sync_to_thread=False)
    def governance(request: Request[Any, Any, Any]) -> Template:
        session = session_of(request)
        return governance_page(request, session)

    def governance_page(
        request: Request[Any, Any, Any], session: WebSession | None, *, status: int = 200, **extra: Any
    ) -> Template:
        view = node.settings()
        # One page of proposals, newest first (?before=ID for older ones): the page stays bounded
        # however many there are.
        before_text = request.query_params.get("before")
        before = None if not before_text else whole_number(before_text, field="before", low=1)
        page_rows = node.store.read(lambda c: list_proposals(c, limit=_PROPOSALS_PER_PAGE + 1, before=before))
        proposals = page_rows[:_PROPOSALS_PER_PAGE]
        older = proposals[-1].id if len(page_rows) > _PROPOSALS_PER_PAGE else None
        entries = node.store.read(lambda c: recent_entries(c, limit=30))
        chain = node.verify_audit()
        voted: set[int] = set()
        if session is not None:
            member_id = session.member.id
            voted = set(
                node.store.read(
                    lambda c: [
                        r[0]
                        for r in c.execute("SELECT proposal_id FROM votes WHERE member_id = ?", (member_id,))
                    ]
                )
            )
        return page(
            request,
            session,
            "governance.html",
            status=status,
            view=view,
            settings=view.settings,
            changed=node.store.read(last_changes),
            proposals=proposals,
            older=older,
            voted=voted,
            entries=entries,
            chain=chain,
            licences=LICENCES,
            scopes=SCOPES,
            **extra,
        )

    # -- signing in ------------------------------------------------------------------

    @get("/login", sync_to_thread=False)
    def login_page(request: Request[Any, Any, Any]) -> Template:
        token, new = login_token(request.cookies.get(LOGIN_COOKIE))
        cookie = Cookie(
            key=LOGIN_COOKIE,
            value=token,
            path="/login",
            max_age=LOGIN_LIFETIME,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request),
        )
        return page(
            request,
            session_of(request),
            "login.html",
            cookies=[cookie] if new else None,
            private=True,  # the form carries this browser's token: no shared cache may keep it
            next=_safe_next(request.query_params.get("next")),
            login_csrf=token,
        )

    @post("/login", status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        values = await posted(request, None, signing_in=True)
        presession = request.cookies.get(LOGIN_COOKIE)
        if not check_login_token(presession, values.get("login_csrf")):
            raise ForbiddenError(
                "this sign-in form is out of date or was not sent from this node's sign-in page: "
                "open the sign-in page again",
                field="login_csrf",
            )
        target = _safe_next(values.get("next"))
        token = str(values.get("token") or "").strip()
        member = node.store.read(lambda c: member_by_token(c, token)) if token else None
        if member is None:
            errors, marked = field_errors(
                "token", "this token is not valid on this node: check it with your co-op's admin"
            )
            return page(
                request,
                None,
                "login.html",
                status=401,
                private=True,
                next=target,
                login_csrf=presession,
                errors=errors,
                error_fields=marked,
                errors_title="Authentication required",
            )
        now = node.now()
        raw = await node.store.awrite(lambda c: start_session(c, member, now=now))
        cookie = Cookie(
            key=COOKIE,
            value=raw,
            path="/",
            max_age=LIFETIME,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request),
        )
        sep = "&" if "?" in target else "?"
        return Redirect(f"{target}{sep}done=signed-in", status_code=303, cookies=[cookie])

    @post("/logout", status_code=303)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        session = session_of(request)
        await posted(request, session)
        raw = request.cookies.get(COOKIE)
        if raw:
            await node.store.awrite(lambda c: end_session(c, raw))
        response = Redirect("/?done=signed-out", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- contribute ------------------------------------------------------------------

    def blank_form(member: Member) -> ContributeForm:
        form = ContributeForm.defaults(
            node.settings().settings.defaults,
            pseudonym=node.default_pseudonym(member),
            form_id=secrets.token_urlsafe(16),
        )
        return msgspec.structs.replace(form, ai_use=_ai_canonical(form.ai_use))

    def contribute_page(
        request: Request[Any, Any, Any],
        session: WebSession,
        form: ContributeForm,
        *,
        status: int = 200,
        chats: list[dict[str, Any]] | None = None,
        preview: Any = None,
        **extra: Any,
    ) -> Template:
        choices = [(_ai_canonical(v), n, h) for v, n, h in AI_CHOICES]
        if form.ai_use and form.ai_use not in {c[0] for c in choices}:
            described = parse_ai_use(form.ai_use).value.describe() if form.ai_use else ""
            choices.insert(0, (form.ai_use, f"As stated: {form.ai_use}", described))
        return page(
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
            threshold=cfg.pipeline.quarantine_pii_threshold,
            **extra,
        )

    @get("/contribute", sync_to_thread=False)
    def contribute(request: Request[Any, Any, Any]) -> Template:
        """The form, pre-filled from the co-op's defaults and any URL parameters (a link from elsewhere)."""
        session = require(request)
        params = {k: v for k, v in request.query_params.items() if k in ContributeForm.__struct_fields__}
        params.pop("upload", None)
        params.pop("form_id", None)
        form = blank_form(session.member).with_values(params, checkboxes=False)
        if form.ai_use:
            form = msgspec.structs.replace(form, ai_use=_ai_canonical(form.ai_use))
        return contribute_page(request, session, form)

    def save_upload(member: Member, data: bytes) -> str:
        upload_id = secrets.token_urlsafe(18)
        now = node.now()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM web_uploads WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO web_uploads (id, member_id, data, expires_at) VALUES (?, ?, ?, ?)",
                (upload_id, member.id, data, now + _UPLOAD_LIFETIME),
            )

        node.store.write(write)
        return upload_id

    def discard_upload(conn: sqlite3.Connection, *, member_id: int, upload_id: str) -> None:
        if conn.execute(
            "DELETE FROM web_uploads WHERE id = ? AND member_id = ?", (upload_id, member_id)
        ).rowcount:
            scrub_after_commit()

    def load_upload(member: Member, upload_id: str) -> bytes:
        now = node.now()
        row = node.store.read(
            lambda c: c.execute(
                "SELECT data FROM web_uploads WHERE id = ? AND member_id = ? AND expires_at >= ?",
                (upload_id, member.id, now),
            ).fetchone()
        )
        if row is None:
            raise InputError("your uploaded export has expired: upload it again", field="export")
        return bytes(row[0])

    def parse(data: bytes, *, field: str) -> list[ParsedChat]:
        try:
            return parse_content(data, None, limits=node.limits)
        except NodeError as exc:
            if exc.field is not None and exc.field.startswith("content") and field != "content":
                exc.field = field
            raise

    def chat_choices(chats: list[ParsedChat]) -> list[dict[str, Any]]:
        return [
            {
                "id": chat.source_id or "",
                "title": chat.title or _first_words(chat.messages, 80) or "(untitled)",
                "messages": len(chat.messages),
                "model": chat.model,
            }
            for chat in chats
        ]

    def content_of(member: Member, form: ContributeForm) -> bytes:
        if form.upload:
            return load_upload(member, form.upload)
        if not form.text.strip():
            raise InputError("paste the conversation, or upload an Open WebUI export", field="content")
        return _ENCODER.encode(form.text)

    def chosen_chat(member: Member, form: ContributeForm) -> ParsedChat:
        data = content_of(member, form)
        chats = parse(content_bytes(data), field="export" if form.upload else "content")
        return select_chat(chats, form.chat_id or None)

    @post("/contribute", status_code=200)
    async def contribute_post(request: Request[Any, Any, Any]) -> Response[Any]:
        session = require(request)
        member = session.member
        values = await posted(request, session)
        step = str(values.get("step") or "submit")
        fields = {k: v for k, v in values.items() if isinstance(v, str)}
        form = blank_form(member).with_values(fields, checkboxes=step != "pick")
        try:
            if step == "upload":
                upload = values.get("export")
                if not isinstance(upload, UploadFile) or not upload.filename:
                    raise InputError("choose an export file to upload first", field="export")
                data = await upload.read()
                if not data.strip():
                    raise InputError("the file is empty", field="export")
                chats = await asyncio.to_thread(partial(parse, data, field="export"))
                upload_id = await asyncio.to_thread(save_upload, member, data)
                form = msgspec.structs.replace(form, upload=upload_id, text="")
                if len(chats) > 1:
                    return contribute_page(request, session, form, chats=chat_choices(chats))
                chosen = chats[0]
            elif step == "pick":
                chosen = await asyncio.to_thread(chosen_chat, member, form)
            else:
                chosen = await asyncio.to_thread(chosen_chat, member, form)
            if form.upload:
                form = msgspec.structs.replace(
                    form,
                    chat_id=chosen.source_id or "",
                    chat_title=chosen.title or _first_words(chosen.messages, 80) or "(untitled)",
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
                return contribute_page(request, session, form, preview=preview)
            content = content_of(member, form)
            wire = form.request(
                content, terms_version=str(values.get("terms_version") or cfg.node.terms_version)
            )
            submission, _notices = await asyncio.to_thread(
                partial(node.build_submission, wire, channel=Channel.WEB, member=member)
            )
            idem = None
            if form.form_id:
                digest = hashlib.sha256(_ENCODER.encode(wire)).hexdigest()
                idem = Idempotency(scope=f"w{member.id}", key=form.form_id[:200], request_sha256=digest)
            result = await store(request, member, submission, idem)
            if form.upload:
                # Shared: the raw export (unredacted, every chat in it) is no longer needed.
                await node.store.awrite(partial(discard_upload, member_id=member.id, upload_id=form.upload))
        except (NodeError, GovernanceError) as exc:
            problem = with_error(exc)
            status = problem.pop("status")
            return contribute_page(request, session, form, status=status, **problem)
        poke()
        return done("/me", "shared", f"#c-{result.uid}")

    @post("/contribute/preview", status_code=200)
    async def live_preview(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The live preview's JSON: the spans the redactor would replace, as JavaScript offsets."""
        session = session_of(request)
        if session is None:
            raise ForbiddenError("sign in to preview", field="session")
        if not check_csrf(session, request.headers.get("x-csrf-token")):
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

    # -- my data -----------------------------------------------------------------------

    @get("/me", sync_to_thread=False)
    def my_data(request: Request[Any, Any, Any]) -> Template:
        session = require(request)
        member_id = session.member.id
        items = node.store.read(lambda c: contrib.list_member_contributions(c, member_id))
        return page(request, session, "me.html", items=list(reversed(items)), states=STATE_WORDS)

    @route("/me/export.jsonl", http_method=[HttpMethod.GET, HttpMethod.HEAD], sync_to_thread=False)
    def my_export(request: Request[Any, Any, Any]) -> Download:
        session = require(request)
        member_id = session.member.id
        lines = node.store.read(lambda c: list(contrib.iter_member_records(c, member_id)))
        return Download(
            b"".join(lines),
            media_type="application/jsonl",
            filename="my-contributions.jsonl",
            disposition="attachment",
            headers={"Cache-Control": "no-store"},
        )

    def owned(session: WebSession, uid: str) -> contrib.ContributionDetail:
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or detail.member_id != session.member.id:
            raise NotFoundError(f"no contribution {uid} of yours", field="uid")
        return detail

    @get("/me/withdraw/{uid:str}", sync_to_thread=False)
    def withdraw_page(request: Request[Any, Any, Any], uid: FromPath[str]) -> Template:
        session = require(request)
        detail = owned(session, uid)
        if detail.view.state is ContributionState.WITHDRAWN:
            raise NotFoundError(f"{uid} is already withdrawn", field="uid")
        messages = (
            detail.record.content
            if detail.record is not None
            else detail.submission.chat.messages
            if detail.submission is not None
            else ()
        )
        return page(request, session, "withdraw.html", item=detail.view, summary=_first_words(messages))

    @post("/me/withdraw/{uid:str}", status_code=303)
    async def withdraw(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[Any]:
        session = require(request)
        await posted(request, session)
        owned(session, uid)
        member = session.member
        now = node.now()
        await node.store.awrite(lambda c: contrib.withdraw_contribution(c, uid=uid, member=member, now=now))
        return done("/me", "withdrawn", f"#c-{uid}")

    # -- admin ----------------------------------------------------------------------------

    def admin_page(
        request: Request[Any, Any, Any], session: WebSession, *, status: int = 200, **extra: Any
    ) -> Template:
        view = node.settings()

        def counts(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                s: int(n) for s, n in conn.execute("SELECT state, count(*) FROM contributions GROUP BY state")
            }

        return page(
            request,
            session,
            "admin.html",
            status=status,
            settings=view.settings,
            view=view,
            changed=node.store.read(last_changes),
            counts=node.store.read(counts),
            waiting=node.store.read(lambda c: contrib.list_by_state(c, ContributionState.WAITING, limit=100)),
            quarantined=node.store.read(
                lambda c: contrib.list_by_state(c, ContributionState.QUARANTINED, limit=100)
            ),
            bounties=node.store.read(lambda c: catalog.bounties(c)),
            entries=node.store.read(lambda c: recent_entries(c, limit=15)),
            open_proposals=[p for p in node.store.read(list_proposals) if p.status.value == "open"],
            releases=node.store.read(list_releases)[-3:],
            **extra,
        )

    @get("/admin", sync_to_thread=False)
    def admin(request: Request[Any, Any, Any]) -> Template:
        return admin_page(request, require(request, admin=True))

    async def admin_action(
        request: Request[Any, Any, Any],
        act: Callable[[WebSession, dict[str, Any]], Any],
        code: str,
        anchor: str = "",
    ) -> Response[Any]:
        session = require(request, admin=True)
        values = await posted(request, session)
        try:
            await asyncio.to_thread(act, session, values)
        except (NodeError, GovernanceError) as exc:
            problem = with_error(exc)
            status = problem.pop("status")
            return admin_page(request, session, status=status, **problem)
        return done("/admin", code, anchor)

    @post("/admin/process", status_code=303)
    async def admin_process(request: Request[Any, Any, Any]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            report = node.process_pending()
            if report.paused:
                raise InputError(
                    "the quality freeze is on: nothing is processed until it is lifted",
                    field="quality_freeze",
                )

        return await admin_action(request, act, "processed", "#waiting")

    @post("/admin/release", status_code=303)
    async def admin_release(request: Request[Any, Any, Any]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            node.cut_release(actor=session.member.name)
            node.index_catalog()

        return await admin_action(request, act, "released", "#releases")

    def switch(session: WebSession, values: dict[str, Any], changes: dict[str, Any]) -> None:
        actor = Actor(session.member.name, admin=True)
        if values.get("how") == "propose":
            reason = str(values.get("reason") or "").strip()
            if not reason:
                raise InputError("say why, for the members who will vote", field="reason")
            node.propose(changes, reason=reason, actor=actor)
        else:
            node.change_settings(changes, actor=actor)

    @post("/admin/embargo", status_code=303)
    async def admin_embargo(request: Request[Any, Any, Any]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            on = values.get("state") == "on"
            embargo = {
                "on": on,
                "tags": _split(str(values.get("tags") or "")) if on else [],
                "languages": _split(str(values.get("languages") or "")) if on else [],
            }
            switch(session, values, {"embargo": embargo})

        return await admin_action(request, act, "embargo", "#switches")

    @post("/admin/freeze", status_code=303)
    async def admin_freeze(request: Request[Any, Any, Any]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            switch(session, values, {"quality_freeze": values.get("state") == "on"})

        return await admin_action(request, act, "freeze", "#switches")

    @get("/admin/review/{uid:str}", sync_to_thread=True)  # redacts every message: off the loop
    def review(request: Request[Any, Any, Any], uid: FromPath[str]) -> Template:
        session = require(request, admin=True)
        detail = node.store.read(lambda c: contrib.get_contribution(c, uid))
        if detail is None or detail.submission is None:
            raise NotFoundError(f"no contribution {uid} waiting or held for review", field="uid")
        sub = detail.submission
        preview = preview_chat(sub.chat, note=sub.note or "", correction=sub.correction or "")
        return page(
            request,
            session,
            "review.html",
            item=detail.view,
            submission=sub,
            preview=preview,
            threshold=cfg.pipeline.quarantine_pii_threshold,
        )

    @post("/admin/review/{uid:str}", status_code=303)
    async def decide(request: Request[Any, Any, Any], uid: FromPath[str]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            choice = parse_enum(Decision, str(values.get("decision") or ""), field="decision")
            node.decide_quarantine(uid, choice, admin=session.member.name)

        return await admin_action(request, act, "decided", "#quarantine")

    @post("/admin/bounties", status_code=303)
    async def add_bounty(request: Request[Any, Any, Any]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            title = str(values.get("title") or "").strip()
            if not 1 <= len(title) <= 120:
                raise InputError("give the bounty a title of 1 to 120 characters", field="title")
            target = whole_number(
                str(values.get("target") or "").strip(), field="target", low=1, high=1_000_000
            )
            label = str(values.get("label") or "") or None
            if label not in (None, "good", "fail"):
                raise InputError("the label is good, fail or either", field="label")
            language = str(values.get("language") or "").strip() or None
            if language is not None and not _LANGUAGE.match(language):
                raise InputError(
                    f"{language[:40]!r} is not a language tag like 'id' or 'pt-BR'", field="language"
                )
            tag = str(values.get("tag") or "").strip() or None
            description = str(values.get("description") or "").strip()[:2000]
            now = node.now()
            name = session.member.name

            def write(conn: sqlite3.Connection) -> None:
                catalog.add_bounty(
                    conn,
                    title=title,
                    description=description,
                    label=label,
                    language=language,
                    tag=tag,
                    target=target,
                    admin=name,
                    now=now,
                )

            node.store.write(write)

        return await admin_action(request, act, "bounty", "#bounties")

    @post("/admin/bounties/{bounty_id:str}/close", status_code=303)
    async def close_bounty(request: Request[Any, Any, Any], bounty_id: FromPath[str]) -> Response[Any]:
        def act(session: WebSession, values: dict[str, Any]) -> None:
            number = whole_number(bounty_id, field="bounty", low=1, error=NotFoundError)
            now = node.now()
            node.store.write(lambda c: catalog.close_bounty(c, number, now=now))

        return await admin_action(request, act, "bounty-closed", "#bounties")

    # -- governance -------------------------------------------------------------------------

    def proposal_changes(kind: str) -> dict[str, Any]:
        """A proposal form's choice, e.g. ``embargo:on`` or ``defaults.license:CC0-1.0``."""
        name, _, value = kind.partition(":")
        if name == "embargo" and value in ("on", "off"):
            return {"embargo": {"on": value == "on", "tags": [], "languages": []}}
        if name == "quality_freeze" and value in ("on", "off"):
            return {"quality_freeze": value == "on"}
        if name == "defaults.license":
            return {"defaults.license": parse_enum(License, value, field="change").value}
        if name == "defaults.scope":
            return {"defaults.scope": parse_enum(Scope, value, field="change").value}
        if name == "defaults.ai_use":
            parse_ai_use(value, field="change", strict=True)
            return {"defaults.ai_use": value}
        raise InputError("choose one of the changes offered", field="change")

    @post("/governance/proposals", status_code=303)
    async def propose(request: Request[Any, Any, Any]) -> Response[Any]:
        session = require(request)
        values = await posted(request, session)
        try:
            changes = proposal_changes(str(values.get("change") or ""))
            reason = str(values.get("reason") or "").strip()
            if not reason:
                raise InputError("say why, for the members who will vote", field="reason")
            member = session.member
            await asyncio.to_thread(
                node.propose, changes, reason=reason, actor=Actor(member.name, admin=member.is_admin)
            )
        except (NodeError, GovernanceError) as exc:
            problem = with_error(exc)
            status = problem.pop("status")
            return governance_page(request, session, status=status, **problem)
        return done("/governance", "proposed", "#proposals")

    @post("/governance/proposals/{proposal:str}/vote", status_code=303)
    async def vote(request: Request[Any, Any, Any], proposal: FromPath[str]) -> Response[Any]:
        session = require(request)
        values = await posted(request, session)
        try:
            number = whole_number(proposal, field="proposal", low=1, error=NotFoundError)
            choice = parse_enum(Choice, str(values.get("choice") or ""), field="choice")
            await asyncio.to_thread(node.vote, number, session.member, choice)
        except (NodeError, GovernanceError) as exc:
            problem = with_error(exc)
            status = problem.pop("status")
            return governance_page(request, session, status=status, **problem)
        return done("/governance", "voted", f"#p{number}")

    @route(
        "/static/{path:path}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def static(path: FromPath[str]) -> Download:
        """The pages' CSS and script, with HEAD, ranges and validators like every file served.

        A name no file there can have (``..``, a NUL byte: ``/static/%00``) is simply absent.
        """
        return static_file(Path(STATIC), path)

    pages = Router(
        path="/",
        route_handlers=[
            home,
            terms,
            faq,
            datasets,
            dataset,
            browse,
            record_page,
            leaderboards,
            bounty_board,
            federation,
            governance,
            login_page,
            login,
            logout,
            contribute,
            contribute_post,
            live_preview,
            my_data,
            my_export,
            withdraw_page,
            withdraw,
            admin,
            admin_process,
            admin_release,
            admin_embargo,
            admin_freeze,
            review,
            decide,
            add_bounty,
            close_bounty,
            propose,
            vote,
            static,
        ],
        exception_handlers={_SignInError: sign_in_redirect},
        include_in_schema=False,
    )
    return [pages], html_error
