"""``GET /gated/{release}/{path}``: a gated data file, to its grantee, through a signed URL.

The URL (minted by ``POST /api/v1/access/requests/{id}/urls`` or the /access page) is
signed for one grant, one grantee, one file and a few minutes; it works only together
with the grantee's own credential (their web session cookie or their bearer token), so a
link passed on does not serve anyone else.  The download is written to the register and
committed before the first byte is sent; a grantee's downloads per hour are limited (429).
The answer is never cached (``Cache-Control: private, no-store``) and comes as an attachment.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from coop.node.access import release_number
from coop.node.errors import ForbiddenError
from coop.node.http.access import Access
from coop.node.http.controller import AreaController
from coop.node.http.download import Download
from coop.node.http.head import HEAD_AS_GET
from coop.node.http.openapi import documented
from coop.node.http.params import whole_number
from coop.node.http.releases import ensure_serving, release_file_download
from coop.node.members.accounts import Member
from coop.node.members.sessions import find_session
from coop.node.releases.repository import get_release
from coop.node.runtime import Node

__all__ = ["SESSION_COOKIE", "GatedController"]

SESSION_COOKIE: Final = "coop_session"  # coop.node.web.sessions.COOKIE (a test holds them equal)
_NO_STORE: Final = "private, no-store"
_FILE_TYPES: Final = ("application/jsonl", "application/vnd.apache.parquet", "application/octet-stream")


def grantee(request: Request[Any, Any, Any], node: Node, access: Access) -> Member:
    """Who presents the URL: their bearer token, else their web session (401/403/429 otherwise)."""
    if request.headers.get("authorization") is None:
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            now = node.now()
            session = node.store.read(lambda c: find_session(c, raw, now=now))
            if session is not None:
                access.limit(f"m{session.member.id}")
                return session.member
    return access.member(request)


def _query(request: Request[Any, Any, Any], name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise ForbiddenError("this is not a download link: ask for one at /access", field=name)
    return str(value)


class GatedController(AreaController):
    """Gated files, served to grantees through signed URLs."""

    @get(
        "/gated/{release:str}/{path:path}",
        operation_class=documented(files=_FILE_TYPES, problems=(401, 403, 404, 429, 503)),
    )
    async def gated_file(
        self,
        request: Request[Any, Any, Any],
        node: NamedDependency[Node],
        access: NamedDependency[Access],
        release: FromPath[str],
        path: FromPath[str],
    ) -> Download:
        """One file of a gated bucket: ``?grant=N&expires=T&sig=HEX`` and the grantee's own credential."""
        member = grantee(request, node, access)
        grant = whole_number(_query(request, "grant"), field="grant", low=1, error=ForbiddenError)
        expires = whole_number(_query(request, "expires"), field="expires", error=ForbiddenError)
        signature = _query(request, "sig")
        number = release_number(release)
        # A bucket waiting for its revision (a withdrawal) is refused before anything is registered.
        ensure_serving(node.store, node.store.read(lambda c: get_release(c, number)), path, federated=False)
        summary, relative, _ = await asyncio.to_thread(
            node.access.download,
            member,
            request_id=grant,
            release=release,
            path=path.lstrip("/"),
            expires_at=expires,
            signature=signature,
            record=not request.scope.get(HEAD_AS_GET),  # a HEAD probes: nothing is sent, nothing kept
        )
        found = release_file_download(node.data.releases_path, summary, relative)
        found.headers["Cache-Control"] = _NO_STORE
        found.headers["Content-Disposition"] = f'attachment; filename="{relative.rsplit("/", 1)[-1]}"'
        return found
