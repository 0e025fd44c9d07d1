"""The static site channel: publishing a release rebuilds the site with every release so far.

The site itself (pages, releases as files, ``_headers``, ``robots.txt``) is
rendered by :func:`coop.node.web.static_site.build_site`, beside the pages it
renders; this channel gets it as a :class:`SiteBuilder` and keeps track of what
the folder holds through the ``site.json`` the builder writes there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

import msgspec

from coop.node.channels.base import Capabilities, ChannelError, ReleaseFolder

__all__ = ["MANIFEST", "SiteBuilder", "SitePublisher", "SiteReport"]

MANIFEST: Final = "site.json"


class SiteReport(msgspec.Struct, frozen=True):
    out: str
    pages: int
    records: int
    releases: list[str]


class SiteBuilder(Protocol):
    """Renders the node's whole site into ``out`` (replaced whole, never half-written)."""

    def __call__(self, out: Path, *, node_url: str | None = None) -> SiteReport: ...


class SitePublisher:
    """The site as a channel: publishing a release rebuilds the site with every release so far."""

    name = "site"
    capabilities = Capabilities(rebuilt_whole=True)

    def __init__(self, target: str, *, build: SiteBuilder, node_url: str | None = None) -> None:
        if not target.strip():
            raise ChannelError("name the folder to build the site in", field="target")
        self.target = target
        self.build = build
        self.node_url = node_url

    def published(self) -> list[str]:
        manifest = Path(self.target) / MANIFEST
        if not manifest.is_file():
            return []
        return list(msgspec.json.decode(manifest.read_bytes(), type=SiteReport).releases)

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        return None  # the site is built only when it is published

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        report = self.build(Path(self.target), node_url=self.node_url)
        if release.name not in report.releases:
            raise ChannelError(f"{release.name} is not a release of this node", field="release")
        return report.out
