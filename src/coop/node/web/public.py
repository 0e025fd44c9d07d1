"""The pages anyone may read: home, terms, FAQ, datasets, the record browser, leaderboards,
bounties, the federation, and the pages' own CSS and script."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Controller, Request, get, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Template

from coop.governance import Embargo, JointRules, parse_ai_use
from coop.node.channels.gated import ACCESS_PATH, gated_buckets, withheld_files
from coop.node.errors import NotFoundError
from coop.node.http.download import Download, static_file
from coop.node.http.params import whole_number
from coop.node.members.sessions import WebSession
from coop.node.releases import bounties, catalog
from coop.node.releases.highlights import is_highlighted
from coop.node.releases.repository import list_federated_releases, list_releases
from coop.node.web.forms import AI_CHOICES, LICENCES, SCOPES
from coop.node.web.render import STATIC
from coop.node.web.site import WebSite

__all__ = ["PublicPages"]

_MAX_PAGE: Final = 1_000_000  # a page number far past any catalogue (only shown: pages go by uid)

Site = NamedDependency[WebSite]
Visitor = NamedDependency[WebSession | None]


def _hidden(site: WebSite) -> tuple[Embargo, frozenset[str]]:
    """What the public pages hold back now: the embargo, and the gated licence buckets
    (``access.gated``: their records reach only grantees, never a page)."""
    settings = site.node.settings().settings
    return settings.embargo, frozenset(settings.access.gated)


def _joint(site: WebSite) -> JointRules:
    """What the joint actions binding the co-op demand now: the pages hide what a joint embargo
    or evaluation-only holds (a joint freeze, like the co-op's own, leaves the pages be)."""
    return site.node.federation.joint.rules()


class PublicPages(Controller):
    """Pages for everyone; a signed-in visitor sees them with their name and sign-out button."""

    path = "/"

    @get("/", sync_to_thread=False)
    def home(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        node = site.node
        return site.page(
            request,
            visitor,
            "home.html",
            releases=node.store.read(list_releases),
            bounties=node.store.read(bounties.bounties),
            settings=node.settings().settings,
        )

    @get("/terms", sync_to_thread=False)
    def terms(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        custom = site.node.data.root / "terms.txt"
        paragraphs = (
            [p.strip() for p in custom.read_text(encoding="utf-8").split("\n\n") if p.strip()]
            if custom.is_file()
            else []
        )
        return site.page(
            request,
            visitor,
            "terms.html",
            paragraphs=paragraphs,
            defaults=site.node.settings().settings.defaults,
            threshold=site.config.pipeline.quarantine_pii_threshold,
        )

    @get("/faq", sync_to_thread=False)
    def faq(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        return site.page(
            request, visitor, "faq.html", licences=LICENCES, ai_choices=AI_CHOICES, scopes=SCOPES
        )

    @get("/datasets", sync_to_thread=False)
    def datasets(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        releases = list(reversed(site.node.store.read(list_releases)))
        federated = list(reversed(site.node.store.read(list_federated_releases)))
        return site.page(request, visitor, "datasets.html", releases=releases, federated=federated)

    @get("/datasets/{name:str}", sync_to_thread=False)
    def dataset(
        self, request: Request[Any, Any, Any], site: Site, visitor: Visitor, name: FromPath[str]
    ) -> Template:
        federated = name.startswith("federated-")
        wanted = name.removeprefix("federated-")
        listing = site.node.store.read(list_federated_releases if federated else list_releases)
        found = next((r for r in listing if r.name == wanted), None)
        if found is None:
            raise NotFoundError(f"there is no release {name!r}", field="release")
        base = "/releases/federated" if federated else "/releases"
        # A gated bucket's data files are served only through /gated, to a grantee (the public
        # routes answer 403): listed with their SHA-256 but not linked, and the page says how
        # to request access, as the static site's page does.
        gated = site.node.access.gated()
        return site.page(
            request,
            visitor,
            "dataset.html",
            release=found,
            base=base,
            federated=federated,
            gated=[b.name for b in gated_buckets(found, gated)],
            withheld=withheld_files(found, gated),
            access_url=ACCESS_PATH,
        )

    @get("/browse")
    async def browse(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
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
        # Keyset pages: the uid the page starts after (or ends before), never an OFFSET.
        after, before = (query.get("after") or "")[:100], (query.get("before") or "")[:100]
        embargo, gated = _hidden(site)
        joint = _joint(site)

        def read(c: sqlite3.Connection) -> tuple[catalog.Listing, dict[str, list[str]]]:
            found = catalog.browse(
                c,
                filters,
                embargo=embargo,
                gated=gated,
                joint=joint,
                after=after or None,
                before=before or None,
            )
            return found, catalog.facets(c, embargo=embargo, gated=gated, joint=joint)

        # Off the event loop (a worker thread's own read connection): a search runs up to its
        # deadline (catalog.browse) and no other request waits for it.
        results, facets = await asyncio.to_thread(site.node.store.read, read)
        kept = {k: v for k, v in msgspec.structs.asdict(filters).items() if v and k != "page"}
        return site.page(
            request, visitor, "browse.html", filters=filters, results=results, facets=facets, kept=kept
        )

    @get("/browse/{uid:str}", sync_to_thread=False)
    def record_page(
        self, request: Request[Any, Any, Any], site: Site, visitor: Visitor, uid: FromPath[str]
    ) -> Template:
        embargo, gated = _hidden(site)
        joint = _joint(site)
        found = site.node.store.read(
            lambda c: catalog.record(c, uid, embargo=embargo, gated=gated, joint=joint)
        )
        if found is None:
            raise NotFoundError(
                f"no published record {uid} (it may be withdrawn, under embargo or gated)", field="uid"
            )
        # An admin sees whether it is highlighted (the Atom feed's), with the button to change it.
        admin = visitor is not None and visitor.member.is_admin
        return site.page(
            request,
            visitor,
            "record.html",
            record=found,
            usage=parse_ai_use(found.ai_use).value.describe() if found.ai_use else "No preference stated.",
            highlighted=admin and site.node.store.read(lambda c: is_highlighted(c, uid)),
        )

    @get("/leaderboards", sync_to_thread=False)
    def leaderboards(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        embargo, gated = _hidden(site)
        joint = _joint(site)
        boards = site.node.store.read(
            lambda c: catalog.leaderboards(c, embargo=embargo, gated=gated, joint=joint)
        )
        evaluations = site.node.eval_reports.listing()
        return site.page(request, visitor, "leaderboards.html", boards=boards, evaluations=evaluations)

    @get("/bounties", sync_to_thread=False)
    def bounty_board(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        items = site.node.store.read(lambda c: bounties.bounties(c, include_closed=True))
        return site.page(request, visitor, "bounties.html", bounties=items)

    @get("/federation", sync_to_thread=False)
    def federation_page(self, request: Request[Any, Any, Any], site: Site, visitor: Visitor) -> Template:
        node = site.node
        return site.page(
            request,
            visitor,
            "federation.html",
            identity=node.identity,
            peers=node.federation.peers(),
            origins=node.federation.origins(),
        )

    @route(
        "/static/{path:path}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def static(self, path: FromPath[str]) -> Download:
        """The pages' CSS and script, with HEAD, ranges and validators like every file served.

        A name no file there can have (``..``, a NUL byte: ``/static/%00``) is simply absent.
        """
        return static_file(Path(STATIC), path)
