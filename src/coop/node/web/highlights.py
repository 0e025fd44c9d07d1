"""The admins' highlight button on a record's page: the record goes into the Atom feed (and the
microblog's previews put it first) for as long as its preview may be shown.

Like every admin form, it names the ``admin`` dependency (sign in first, admins only) and
posts with the session's CSRF token and the site's origin check.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.node.members.sessions import WebSession
from coop.node.releases.highlights import HighlightChange, set_highlight
from coop.node.web.site import WebSite, done

__all__ = ["HighlightPages"]


class HighlightPages(Controller):
    """For the co-op's admins only."""

    path = "/"

    @post("/admin/highlight/{uid:str}", status_code=303)
    async def highlight(
        self,
        request: Request[Any, Any, Any],
        site: NamedDependency[WebSite],
        admin: NamedDependency[WebSession],
        uid: FromPath[str],
    ) -> Response[Any]:
        """Highlight the record (``highlight=on``) or remove its highlight (``off``); back to
        its page, or to the dashboard's list with ``back=admin``.  A record the catalogue does not hold answers 404, as its page does."""
        values = await site.posted(request, admin)
        on = values.get("highlight") != "off"
        node, actor = site.node, admin.member.name
        now = node.now()

        def write(conn: sqlite3.Connection) -> HighlightChange:
            return set_highlight(conn, uid=uid, on=on, actor=actor, at=now, signer=node.signer)

        await asyncio.to_thread(node.store.write, write)
        code = "highlighted" if on else "unhighlighted"
        if values.get("back") == "admin":  # from the dashboard's list (the record may be withdrawn)
            return done("/admin", code, "#highlights")
        return done(f"/browse/{quote(uid, safe='')}", code)
