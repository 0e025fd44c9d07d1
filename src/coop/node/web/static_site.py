"""The static site: the public pages and the releases as plain files for any static host.

``coop site build DIR OUT`` renders the same templates the node serves
(datasets, the record browser, leaderboards, bounties, federation, terms,
FAQ) into ``OUT`` with every release's files beside them, plus what a static
host needs to send each bucket's ``Content-Usage``: a ``_headers`` file
(Netlify, Cloudflare Pages) and an nginx snippet, ``robots.txt`` and the Atom feed ``feed.atom``.

Links are the node's own paths; pages are ``index.html`` files in folders
(``/browse/<uid>/``), which every static host serves for the folder.  The
browser's search works without a server through a small JSON index (and
without JavaScript every record is still reachable page by page).  The site is
built in a temporary folder and swapped in at the end: a host never serves a
half-written site.

The site channel (:class:`coop.node.channels.site.SitePublisher`) publishes by
calling :func:`build_site`; it lives here, with the pages it renders.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any, Final

import msgspec

from coop.governance import Record, parse_ai_use
from coop.node.channels.base import ChannelError, ReleaseFolder
from coop.node.channels.gated import ACCESS_PATH, gated_buckets, withheld_files
from coop.node.channels.site import MANIFEST, SiteBuilder, SiteReport
from coop.node.releases import bounties, catalog
from coop.node.releases.model import ReleaseSummary, robots_txt
from coop.node.releases.repository import list_releases
from coop.node.releases.statement import STATEMENT, stored_statement
from coop.node.runtime import Node
from coop.node.web.atom import feed_of, render
from coop.node.web.forms import AI_CHOICES, LICENCES, SCOPES
from coop.node.web.funnel_charts import funnel_context
from coop.node.web.render import STATIC, environment

__all__ = ["build_site", "site_builder"]

_PAGE_SIZE: Final = 50


def _headers_file(releases: list[ReleaseSummary]) -> str:
    """Netlify / Cloudflare Pages ``_headers``: each bucket's files carry its Content-Usage."""
    lines = ["/*", "  X-Content-Type-Options: nosniff", "  Referrer-Policy: same-origin"]
    # no-cache: revalidate before each use, so an entry hidden now leaves readers' caches at once.
    lines += ["/feed.atom", "  Content-Type: application/atom+xml; charset=utf-8"]
    lines += ["  Cache-Control: no-cache"]
    for release in releases:
        for bucket in release.buckets:
            if bucket.content_usage:
                lines += [
                    f"/releases/{release.name}/{bucket.name}/*",
                    f"  Content-Usage: {bucket.content_usage}",
                ]
    return "\n".join(lines) + "\n"


def _nginx_snippet(releases: list[ReleaseSummary]) -> str:
    lines = [
        "# Include inside the nginx server block that serves this site:",
        "#   include /path/to/site/nginx-content-usage.conf;",
        "# Each release bucket is sent with the AI-use preference of its records.",
    ]
    for release in releases:
        for bucket in release.buckets:
            if bucket.content_usage:
                value = bucket.content_usage.replace('"', "")
                lines.append(
                    f'location ^~ /releases/{release.name}/{bucket.name}/ {{ add_header Content-Usage "{value}" always; }}'
                )
    return "\n".join(lines) + "\n"


def build_site(node: Node, out: Path, *, node_url: str | None = None) -> SiteReport:
    """Render the public site of ``node`` into ``out`` (replaced whole, never half-written)."""
    out = out.resolve()
    if out == node.data.root.resolve() or node.data.root.resolve() in out.parents:
        raise ChannelError("build the site outside the node's data directory", field="out")
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise ChannelError(
            f"{out} is not empty and holds no site made by coop: choose another folder", field="out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        report = _render(node, tmp, node_url=node_url.rstrip("/") if node_url else None)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return msgspec.structs.replace(report, out=str(out))


def _swap(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _render(node: Node, root: Path, *, node_url: str | None) -> SiteReport:
    while node.index_catalog():  # the catalogue holds every release cut so far
        pass
    env = environment()
    cfg = node.config
    settings = node.settings().settings
    embargo = settings.embargo
    # Gated buckets (settings.access): their data files and records stay off the site; their
    # card, checksums and this page's note say where a model builder requests access.
    gated = frozenset(settings.access.gated)
    # What the joint actions binding the co-op hold: a joint embargo's and evaluation-only's
    # records stay off the site as on the node's pages (a joint freeze, like its own, does not).
    joint = node.federation.joint.rules()
    access_url = (node_url or cfg.node.public_url).rstrip("/") + ACCESS_PATH
    releases = node.store.read(list_releases)
    pages = 0

    def write(path: str, template: str, **values: Any) -> None:
        nonlocal pages
        context: dict[str, Any] = {
            "coop": cfg.node.name,
            "terms_version": cfg.node.terms_version,
            "member": None,
            "csrf": "",
            "flash": None,
            "errors": [],
            "error_fields": defaultdict(bool),
            "errors_title": None,
            "path": path,
            "static_site": True,
            "node_url": node_url,
        }
        context.update(values)
        target = root / path.strip("/") / "index.html" if path != "/" else root / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(env.get_template(template).render(context), encoding="utf-8")
        pages += 1

    # Releases: the files as cut, plus the signed statement.
    for release in releases:
        folder = ReleaseFolder(
            path=node.data.releases_path / release.label, summary=release, gated=gated, access_url=access_url
        )
        destination = root / "releases" / release.name
        for relative in folder.files():  # a gated bucket's data files are not among them
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if folder.as_cut(relative):
                shutil.copyfile(folder.path / relative, target)
            else:
                target.write_bytes(folder.read(relative))
        # The statement signed at the cut, as every exit serves it.
        (destination / STATEMENT).write_bytes(stored_statement(folder.path, release, node.signer))
    shutil.copytree(STATIC, root / "static")

    open_bounties = node.store.read(lambda c: bounties.bounties(c))
    write("/", "home.html", releases=releases, bounties=open_bounties, settings=settings)
    write("/datasets", "datasets.html", releases=list(reversed(releases)), federated=[])
    for release in releases:
        write(
            f"/datasets/{release.name}",
            "dataset.html",
            release=release,
            base="/releases",
            federated=False,
            gated=[b.name for b in gated_buckets(release, gated)],
            withheld=withheld_files(release, gated),
            access_url=access_url,
        )

    # The browser: every catalogued record, page by page, and one page each.
    facets = node.store.read(lambda c: catalog.facets(c, embargo=embargo, gated=gated, joint=joint))

    def page(conn: sqlite3.Connection, number: int) -> catalog.Page:
        return catalog.search(
            conn,
            catalog.SearchFilters(page=number),
            embargo=embargo,
            gated=gated,
            joint=joint,
            page_size=_PAGE_SIZE,
        )

    def one(conn: sqlite3.Connection, uid: str) -> Record | None:
        return catalog.record(conn, uid, embargo=embargo, gated=gated, joint=joint)

    rows: list[catalog.Row] = []
    number = 1
    while True:
        found = node.store.read(partial(page, number=number))
        if gated:  # a gated bucket's records are read only by its grantees, never on the site
            found = msgspec.structs.replace(found, rows=[r for r in found.rows if r.license not in gated])
        rows += found.rows
        write(
            "/browse" if found.page == 1 else f"/browse/page/{found.page}",
            "browse.html",
            filters=catalog.SearchFilters(page=found.page),
            results=found,
            facets=facets,
            kept={},
        )
        if found.page >= found.pages:
            break
        number += 1
    (root / "browse" / "index.json").write_text(
        json.dumps([msgspec.to_builtins(r) for r in rows], ensure_ascii=False), encoding="utf-8"
    )
    for row in rows:
        record = node.store.read(partial(one, uid=row.uid))
        if record is None:
            continue
        usage = parse_ai_use(record.ai_use).value.describe() if record.ai_use else "No preference stated."
        write(f"/browse/{record.uid}", "record.html", record=record, usage=usage)

    evaluations = node.eval_reports.listing()
    write(
        "/leaderboards",
        "leaderboards.html",
        boards=node.store.read(lambda c: catalog.leaderboards(c, embargo=embargo, gated=gated, joint=joint)),
        evaluations=evaluations,
    )
    # The signed reports whose every co-op consented to be named, as the node serves them.
    for evaluation in evaluations:
        if evaluation.downloadable:
            target = root / "eval" / "reports" / f"{evaluation.hash}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(node.eval_reports.download(evaluation.hash))
    write(
        "/bounties",
        "bounties.html",
        bounties=node.store.read(lambda c: bounties.bounties(c, include_closed=True)),
    )
    write(
        "/federation",
        "federation.html",
        identity=node.identity,
        peers=node.federation.peers(),
        origins=node.federation.origins(),
    )
    write(
        "/terms",
        "terms.html",
        paragraphs=_terms(node.data.root / "terms.txt"),
        defaults=settings.defaults,
        threshold=cfg.pipeline.quarantine_pii_threshold,
    )
    write("/faq", "faq.html", licences=LICENCES, ai_choices=AI_CHOICES, scopes=SCOPES)
    # Aggregates only: stage counts and yields per route, records published per channel and day.
    write("/funnel", "funnel.html", **funnel_context(node, public=True))

    # The Atom feed: the same entries and ids as the node's /feed.atom, links within this site.
    (root / "feed.atom").write_bytes(render(feed_of(node, base_url="")))
    (root / "_headers").write_text(_headers_file(releases), encoding="utf-8")
    (root / "nginx-content-usage.conf").write_text(_nginx_snippet(releases), encoding="utf-8")
    (root / "robots.txt").write_text(
        robots_txt(cfg.node.name, releases, fallback=settings.defaults.ai_use, disallow=()), encoding="utf-8"
    )
    # Labels (vN-rK once revised): a new revision is something the site does not hold yet.
    report = SiteReport(out=str(root), pages=pages, records=len(rows), releases=[r.label for r in releases])
    (root / MANIFEST).write_bytes(msgspec.json.encode(report))
    for path in root.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)
    return report


def _terms(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def site_builder(node: Node) -> SiteBuilder:
    """What the site channel calls to rebuild ``node``'s site (``coop publish --channel site``)."""
    return partial(build_site, node)
