"""The node's gated access, as the HTTP routes, the pages and the CLI use it (``Node.access``).

One short method per operation, each a clock, a transaction and a call into
:mod:`~coop.node.access.requests`, :mod:`~coop.node.access.urls` or
:mod:`~coop.node.access.register`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

from coop.governance import Settings, Signer
from coop.governance.canonical import MAX_SAFE_INTEGER
from coop.node.access import register, requests, urls
from coop.node.access.register import DownloadView
from coop.node.access.requests import RequestView
from coop.node.access.urls import SignedUrl, UrlParts
from coop.node.collective.proposals import ProposalView
from coop.node.collective.settings import Actor
from coop.node.errors import ForbiddenError, NotFoundError, RateLimitedError
from coop.node.members.accounts import Member
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import get_release
from coop.node.storage.store import Store

__all__ = ["GatedAccess", "gated_file", "release_number"]

GATED_HINT = "gated: request access at /access"
_RELEASE: Final = re.compile(r"0|[1-9][0-9]{0,15}")  # ASCII only: [0-9] is not \d


def release_number(text: str) -> int:
    """``v3`` (or ``3``) as 3; anything else is no release (404 naming ``release``).

    The same bound as :func:`coop.node.http.params.release_version` (this layer may not import
    http/): ASCII digits in canonical form, at most 2^53-1, read only after the pattern held, so
    a 30-digit or a 5,000-digit name is a 404, never SQLite's OverflowError nor int()'s limit.
    """
    digits = text[1:] if text.startswith("v") else text
    if _RELEASE.fullmatch(digits) is None or not 1 <= int(digits) <= MAX_SAFE_INTEGER:
        shown = text[:24] + ("..." if len(text) > 24 else "")
        raise NotFoundError(f"{shown!r} is not a release (they are named v1, v2, ...)", field="release")
    return int(digits)


def gated_file(summary: ReleaseSummary, path: str, gated: frozenset[str] | tuple[str, ...]) -> str | None:
    """The licence bucket that makes ``path`` a gated data file, or None (card, Croissant,
    checksums, release.json and the files of open buckets stay public)."""
    bucket = summary.bucket(path.lstrip("/").split("/", 1)[0])
    if bucket is None or bucket.license.value not in gated:
        return None
    return bucket.license.value


class GatedAccess:
    """Requests, grants, signed URLs and the register of one node."""

    def __init__(
        self,
        store: Store,
        *,
        key_path: Path,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        settings: Callable[[], Settings],
    ) -> None:
        self.store = store
        self.key_path = key_path
        self.clock = clock
        self.signer = signer
        self.settings = settings
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = urls.gated_key(self.key_path)
        return self._key

    def gated(self) -> frozenset[str]:
        """The gated licence buckets now."""
        return frozenset(self.settings().access.gated)

    # -- requests and decisions -----------------------------------------------------------

    def request(
        self,
        member: Member,
        *,
        who: str,
        purpose: str,
        model: str,
        open_weights: bool,
        buckets: tuple[str, ...] | list[str],
        accept_terms: bool,
    ) -> RequestView:
        at = self.clock()
        return self.store.write(
            lambda c: requests.request_access(
                c,
                member=member,
                who=who,
                purpose=purpose,
                model=model,
                open_weights=open_weights,
                buckets=buckets,
                accept_terms=accept_terms,
                at=at,
                signer=self.signer(),
            )
        )

    def approve(self, request_id: int, *, actor: Actor) -> tuple[RequestView, ProposalView | None]:
        at = self.clock()
        return self.store.write(
            lambda c: requests.approve(c, request_id, actor=actor, at=at, signer=self.signer())
        )

    def refuse(self, request_id: int, *, actor: Actor) -> RequestView:
        at = self.clock()
        return self.store.write(
            lambda c: requests.refuse(c, request_id, actor=actor, at=at, signer=self.signer())
        )

    def revoke(self, request_id: int, *, actor: Actor) -> RequestView:
        at = self.clock()
        return self.store.write(
            lambda c: requests.revoke(c, request_id, actor=actor, at=at, signer=self.signer())
        )

    def get(self, request_id: int) -> RequestView:
        now = self.clock()
        return self.store.read(lambda c: requests.get_request(c, request_id, now=now))

    def requests(self, *, member: Member | None) -> list[RequestView]:
        """One account's requests, or everyone's (``member=None``: for admins)."""
        now = self.clock()
        member_id = None if member is None else member.id
        return self.store.read(lambda c: requests.list_requests(c, now=now, member_id=member_id))

    def register(self, *, member: Member | None) -> list[DownloadView]:
        """One grantee's downloads, or everyone's (``member=None``: for admins)."""
        member_id = None if member is None else member.id
        return self.store.read(lambda c: register.list_downloads(c, member_id=member_id))

    # -- signed URLs and downloads --------------------------------------------------------

    def _granted_file(
        self, conn: sqlite3.Connection, grant: RequestView, release: str, path: str
    ) -> tuple[ReleaseSummary, str]:
        """The release and the file's path, if the file is a data file of a bucket the grant covers."""
        summary = get_release(conn, release_number(release))
        relative = path.lstrip("/")
        if relative not in {f.path for f in summary.files}:
            raise NotFoundError(f"release {summary.name} has no file {relative[:120]!r}", field="path")
        bucket = summary.bucket(relative.split("/", 1)[0])
        if bucket is None or bucket.license.value not in grant.buckets:
            raise ForbiddenError(
                f"grant {grant.id} does not cover {relative[:120]!r} (it covers {', '.join(grant.buckets)})",
                field="path",
            )
        return summary, relative

    def mint_url(self, request_id: int, member: Member, *, release: str, path: str) -> SignedUrl:
        """A signed URL for one file of a bucket ``member``'s grant covers, valid ``url_seconds``."""
        now = self.clock()
        lifetime = self.settings().access.url_seconds

        def read(conn: sqlite3.Connection) -> SignedUrl:
            grant = requests.usable_grant(conn, request_id, member.id, now=now)
            summary, relative = self._granted_file(conn, grant, release, path)
            parts = UrlParts(
                request_id=grant.id,
                member_id=member.id,
                release=summary.name,
                path=relative,
                expires_at=now + lifetime,
            )
            return urls.signed_url(self.key, parts)

        return self.store.read(read)

    def download(
        self,
        member: Member,
        *,
        request_id: int,
        release: str,
        path: str,
        expires_at: int,
        signature: str,
        record: bool = True,
    ) -> tuple[ReleaseSummary, str, DownloadView | None]:
        """Check a signed URL against the credential that came with it, the grant and the hourly
        limit, and record the download (committed when this returns: before any byte is sent).
        ``record=False`` (a HEAD) checks the URL and the grant only."""
        now = self.clock()
        parts = UrlParts(
            request_id=request_id, member_id=member.id, release=release, path=path, expires_at=expires_at
        )
        urls.verify(self.key, parts, signature, now=now)
        per_hour = self.settings().access.downloads_per_hour

        def write(conn: sqlite3.Connection) -> tuple[ReleaseSummary, str, DownloadView | None]:
            grant = requests.usable_grant(conn, request_id, member.id, now=now)
            summary, relative = self._granted_file(conn, grant, release, path)
            if not record:
                return summary, relative, None
            recent = register.downloads_since(conn, member.id, now - register.HOUR)
            if len(recent) >= per_hour:
                wait = max(recent[0] + register.HOUR - now, 1)
                raise RateLimitedError(
                    f"{len(recent)} downloads in the last hour; at most {per_hour} an hour: retry in {wait} s",
                    retry_after=wait,
                )
            size = next(f.bytes for f in summary.files if f.path == relative)
            row = register.record_download(
                conn,
                request_id=grant.id,
                member_id=member.id,
                release=summary.name,
                path=relative,
                size=size,
                at=now,
            )
            view = DownloadView(
                id=row,
                request_id=grant.id,
                who=member.name,
                release=summary.name,
                path=relative,
                bytes=size,
                at=now,
            )
            return summary, relative, view

        return self.store.write(write) if record else self.store.read(write)
