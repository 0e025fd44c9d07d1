"""Signing in and out: a member pastes their token once; the browser then keeps a session cookie."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from coop.node.errors import ForbiddenError
from coop.node.members.repository import member_by_token
from coop.node.members.sessions import LIFETIME, WebSession, end_session, start_session
from coop.node.web.forms import field_errors
from coop.node.web.sessions import COOKIE, LOGIN_COOKIE, LOGIN_LIFETIME, check_login_token, login_token
from coop.node.web.site import WebSite

__all__ = ["SignInPages", "safe_next"]

Site = NamedDependency[WebSite]
Visitor = NamedDependency[WebSession | None]


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this node, never another site (``//host``, ``\\``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/me"
    return value


class SignInPages(Controller):
    """The sign-in page and form (guarded by a double-submit token and the Origin), and sign-out."""

    path = "/"

    @get("/login", sync_to_thread=False)
    def login_page(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        token, new = login_token(request.cookies.get(LOGIN_COOKIE))
        cookie = Cookie(
            key=LOGIN_COOKIE,
            value=token,
            path="/login",
            max_age=LOGIN_LIFETIME,
            httponly=True,
            samesite="strict",
            secure=site.secure_cookies(request),
        )
        return site.page(
            request,
            visitor,
            "login.html",
            cookies=[cookie] if new else None,
            private=True,  # the form carries this browser's token: no shared cache may keep it
            next=safe_next(request.query_params.get("next")),
            login_csrf=token,
        )

    @post("/login", status_code=303)
    async def login(self, request: Request[Any, Any, Any], site: Site) -> Response[Any]:
        values = await site.posted(request, None, signing_in=True)
        presession = request.cookies.get(LOGIN_COOKIE)
        if not check_login_token(presession, values.get("login_csrf")):
            raise ForbiddenError(
                "this sign-in form is out of date or was not sent from this node's sign-in page: "
                "open the sign-in page again",
                field="login_csrf",
            )
        target = safe_next(values.get("next"))
        token = str(values.get("token") or "").strip()
        node = site.node
        member = node.store.read(lambda c: member_by_token(c, token)) if token else None
        if member is None:
            errors, marked = field_errors(
                "token", "this token is not valid on this node: check it with your co-op's admin"
            )
            return site.page(
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
            secure=site.secure_cookies(request),
        )
        sep = "&" if "?" in target else "?"
        return Redirect(f"{target}{sep}done=signed-in", status_code=303, cookies=[cookie])

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Response[Any]:
        await site.posted(request, visitor)
        raw = request.cookies.get(COOKIE)
        if raw:
            await site.node.store.awrite(lambda c: end_session(c, raw))
        response = Redirect("/?done=signed-out", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
