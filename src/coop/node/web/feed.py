"""``GET /feed.atom``: the co-op's Atom feed (:mod:`coop.node.web.atom`), for any feed reader."""

from __future__ import annotations

from litestar import Controller, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod

from coop.node.http.download import Download
from coop.node.web.atom import FEED_CACHE_CONTROL, FEED_PATH, MEDIA_TYPE, feed_of, render
from coop.node.web.site import WebSite

__all__ = ["FeedPages"]


class FeedPages(Controller):
    """The feed, for anyone and any feed reader."""

    path = "/"

    @route(
        FEED_PATH,
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        sync_to_thread=True,  # reads every release summary and the highlights: off the loop
        include_in_schema=False,
    )
    def feed(self, site: NamedDependency[WebSite]) -> Download:
        """The Atom feed, with a strong ETag (its bytes' SHA-256) for conditional GETs.

        No Last-Modified: a highlighted record that may no longer be shown leaves the feed
        without any entry's date moving, so a date would tell a reader nothing changed.  For
        the same reason ``Cache-Control: no-cache``: a cache may keep the feed but must ask
        again (a cheap 304 by the ETag) before every use, so a hidden entry vanishes at once.
        """
        return Download(
            render(feed_of(site.node, base_url=site.config.node.public_url)),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": FEED_CACHE_CONTROL},
        )
