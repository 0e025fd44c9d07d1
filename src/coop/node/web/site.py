"""What every page controller shares: sessions, the origin and CSRF checks, rendering, error pages.

One :class:`WebSite` is built per app (by :func:`coop.node.web.pages.web_handlers`)
and handed to the controllers by Litestar's dependency injection, with the
visitor's session: ``visitor`` (a session or None), ``session`` (signed in, else
the page sends them to sign in) and ``admin`` (signed in as an admin, else 403).
A test can call a handler with its own ``WebSite`` and session instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect, Template

from coop.governance import GovernanceError, parse_ai_use
from coop.node.contributions.repository import Idempotency, InsertResult
from coop.node.contributions.submission import Submission
from coop.node.errors import ForbiddenError, NodeError
from coop.node.http.problems import classify
from coop.node.members.accounts import Member
from coop.node.members.sessions import WebSession, find_session
from coop.node.runtime import Node
from coop.node.web.forms import field_errors
from coop.node.web.sessions import COOKIE, check_csrf

__all__ = [
    "SignInRequiredError",
    "StoreContribution",
    "WebSite",
    "ai_canonical",
    "done",
    "first_words",
    "page_dependencies",
    "sign_in_redirect",
]

StoreContribution = Callable[
    [Request[Any, Any, Any], Member, Submission, Idempotency | None], Awaitable[InsertResult]
]

# What a finished action says on the page it lands on (codes, so no text is reflected from the URL).
_DONE: Final = {
    "shared": "Thank you: your chat is safely stored. It is checked for personal data next; "
    "its state below tells you where it is.",
    "withdrawn": (
        "Withdrawn. Its content is erased here, it is left out of every future release, and it is being "
        "removed from the releases this node serves; copies downloaded before cannot be recalled."
    ),
    "corrected": "Your correction is saved. The chat is checked again before it is published.",
    "announce-on": "Your released chats may be announced on the co-op's microblog and feed.",
    "announce-off": "Your chats will not be announced: no new post or feed entry names one of them.",
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
    "highlighted": "Highlighted: the Atom feed carries this record while its preview may be shown.",
    "unhighlighted": "The highlight is removed: the Atom feed no longer carries this record.",
    "joint-proposed": "The joint action is proposed, and this co-op signed it.",
    "joint-signed": "This co-op signed the joint action.",
    "joint-ended": "This co-op signed the joint action's end.",
    # The actions page shows these with the proposal's number and a link to it.
    "joint-proposed-vote": "The joint action is proposed; this co-op's signature is put to the members' vote "
    "on the governance page.",
    "joint-sign-vote": "This co-op's signature is put to the members' vote on the governance page.",
    "joint-end-vote": "This co-op's signature of the end is put to the members' vote on the governance page.",
}


class SignInRequiredError(Exception):
    """The page needs a signed-in member: send them to the sign-in page and back."""


def origin_of(url: str) -> str | None:
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


def ai_canonical(value: str) -> str:
    """An AI-use preference as the form shows it.

    Strict: a typo stays as typed (and is refused with a suggestion when posted),
    never canonicalised away into "no preference".
    """
    try:
        return parse_ai_use(value, strict=True).value.to_header()
    except GovernanceError:
        return value


def first_words(chat_messages: Any, limit: int = 280) -> str:
    """The first thing the member said, on one line: how people tell their chats apart."""
    for message in chat_messages:
        if message.role.value == "user":
            text = " ".join(message.content.split())
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return ""


def done(path: str, code: str, anchor: str = "") -> Redirect:
    """After a form: back to ``path``, which says what was done (by ``code``, see ``_DONE``)."""
    sep = "&" if "?" in path else "?"
    return Redirect(f"{path}{sep}done={code}{anchor}", status_code=303)


def sign_in_redirect(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)


class WebSite:
    """The node as the pages see it, and what each page does alike: sessions, checks, rendering."""

    def __init__(self, node: Node, *, store: StoreContribution, poke: Callable[[], None]) -> None:
        self.node = node
        self.config = node.config
        self.store_contribution = store
        self.poke = poke
        self.public_origin = origin_of(node.config.node.public_url)
        self.public_https = node.config.node.public_url.lower().startswith("https://")

    # -- sessions and checks ----------------------------------------------------------

    def session_of(self, request: Request[Any, Any, Any]) -> WebSession | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        now = self.node.now()
        return self.node.store.read(lambda c: find_session(c, raw, now=now))

    def secure_cookies(self, request: Request[Any, Any, Any]) -> bool:
        """Cookies only over https: when the request came so, or the co-op's public URL is https
        (then a proxy without ``trusted_proxies`` cannot leave them unprotected)."""
        return self.public_https or request.url.scheme == "https"

    def same_origin(self, request: Request[Any, Any, Any], *, strict: bool) -> None:
        """Refuse a form another site sent: its Origin (or, without one, its Referer) must be ours.

        Ours is the request's own origin (behind a trusted proxy: the browser's ``https://host``)
        or ``node.public_url``'s.  ``Origin: null`` (a sandboxed frame, a data: URL) always fails;
        ``strict`` also fails a form with neither header (sign-in, which no session token guards).
        """
        ours = {origin_of(f"{request.url.scheme}://{request.url.netloc}"), self.public_origin} - {None}
        origin = request.headers.get("origin")
        if origin is not None:
            if origin_of(origin) not in ours:
                raise ForbiddenError("this form was sent from another site", field="Origin")
            return
        referer = request.headers.get("referer")
        if referer is not None:
            if origin_of(referer) not in ours:
                raise ForbiddenError("this form was sent from another site", field="Referer")
        elif strict:
            raise ForbiddenError(
                "your browser did not say which site sent this form: sign in from this node's page",
                field="Origin",
            )

    async def posted(
        self, request: Request[Any, Any, Any], session: WebSession | None, *, signing_in: bool = False
    ) -> dict[str, Any]:
        """The form's fields; refuses a form from another site or an old session."""
        self.same_origin(request, strict=signing_in)
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

    # -- rendering ---------------------------------------------------------------------

    def context(
        self, request: Request[Any, Any, Any], session: WebSession | None, **values: Any
    ) -> dict[str, Any]:
        code = request.query_params.get("done")
        base: dict[str, Any] = {
            "coop": self.config.node.name,
            "terms_version": self.config.node.terms_version,
            "member": None if session is None else session.member,
            "csrf": "" if session is None else session.csrf,
            "flash": _DONE.get(code or ""),
            "errors": [],
            "error_fields": defaultdict(bool),
            "errors_title": None,
            "path": request.url.path,
        }
        base.update(values)
        return base

    def page(
        self,
        request: Request[Any, Any, Any],
        session: WebSession | None,
        name: str,
        *,
        status: int = 200,
        cookies: list[Cookie] | None = None,
        private: bool = False,
        **values: Any,
    ) -> Template:
        """Template ``name`` with the shared context; a signed-in (or ``private``) page is never cached."""
        return Template(
            template_name=name,
            context=self.context(request, session, **values),
            status_code=status,
            cookies=cookies,
            headers={"Cache-Control": "no-store"} if session is not None or private else None,
        )

    @staticmethod
    def with_error(exc: NodeError | GovernanceError) -> dict[str, Any]:
        """A refused form's problem as the page shows it, next to its field; ``status`` for the answer."""
        status, _, title = classify(exc)
        errors, marked = field_errors(exc.field, exc.message)
        return {"errors": errors, "error_fields": marked, "errors_title": title, "status": status}

    def html_error(self, request: Request[Any, Any, Any], problem: dict[str, Any]) -> Response[Any]:
        """The error page: the same problem details as the API, in words."""
        try:
            session = self.session_of(request)
        except NodeError:
            session = None
        errors, _ = field_errors(problem.get("field"), str(problem.get("detail", "")))
        return self.page(
            request,
            session,
            "error.html",
            status=int(problem.get("status", 500)),
            problem=problem,
            errors=errors,
            errors_title=problem.get("title"),
        )


# -- dependencies: what a page handler may name as a parameter ---------------------------


def _visitor(request: Request[Any, Any, Any], site: NamedDependency[WebSite]) -> WebSession | None:
    return site.session_of(request)


def _session(visitor: NamedDependency[WebSession | None]) -> WebSession:
    if visitor is None:
        raise SignInRequiredError
    return visitor


def _admin(session: NamedDependency[WebSession]) -> WebSession:
    if not session.member.is_admin:
        raise ForbiddenError("only the co-op's admins may open this page", field="session")
    return session


def page_dependencies(site: WebSite) -> dict[str, Provide]:
    """``site``, ``visitor``, ``session`` and ``admin``, for the pages' router."""

    def _site() -> WebSite:
        return site

    return {
        "site": Provide(_site, use_cache=True, sync_to_thread=False),
        "visitor": Provide(_visitor, sync_to_thread=False),
        "session": Provide(_session, sync_to_thread=False),
        "admin": Provide(_admin, sync_to_thread=False),
    }
