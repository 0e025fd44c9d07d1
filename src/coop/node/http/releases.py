"""The releases: their summaries, their signed statements and their files, own and federated."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import Response, get, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.params import FromPath

from coop.governance.envelope import Envelope
from coop.node.access import GATED_HINT, gated_file
from coop.node.errors import BusyError, ForbiddenError, NotFoundError
from coop.node.http.controller import AreaController, json_response
from coop.node.http.download import Download
from coop.node.http.openapi import documented
from coop.node.http.params import release_version
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import (
    get_federated_release,
    get_release,
    list_federated_releases,
    list_releases,
)
from coop.node.releases.revision import withheld
from coop.node.releases.statement import stored_statement
from coop.node.runtime import Node
from coop.node.storage.store import Store

__all__ = ["ReleasesController"]

_MEDIA: Final = {
    "jsonl": "application/jsonl",
    "parquet": "application/vnd.apache.parquet",
    "md": "text/markdown",
    "json": "application/json",
}
_GET_HEAD: Final = [HttpMethod.GET, HttpMethod.HEAD]
_FILE_TYPES: Final = (*_MEDIA.values(), "application/octet-stream")


def _release_version(text: str) -> int:
    return release_version(text, field="version")


def release_file_download(folder: Path, summary: ReleaseSummary, path: str) -> Download:
    """A file the release lists (nothing else, whatever the path), with its bucket's Content-Usage.

    Its strong ETag is the SHA-256 the release lists for it (SHA256SUMS: size and mtime).
    """
    relative = path.lstrip("/")
    digests = {f.path: f.sha256 for f in summary.files}
    if relative not in digests and relative != "SHA256SUMS":
        raise NotFoundError(f"release {summary.name} has no file {relative!r}", field="path")
    headers: dict[str, str] = {}
    bucket = summary.bucket(relative.split("/", 1)[0])
    if bucket is not None and bucket.content_usage:
        headers["Content-Usage"] = bucket.content_usage
    return Download(
        folder / summary.label / relative,  # the revision the row names: never a half-swapped one
        filename=Path(relative).name,
        media_type=_MEDIA.get(relative.rsplit(".", 1)[-1], "application/octet-stream"),
        headers=headers,
        etag=digests.get(relative),
    )


def ensure_public(node: Node, summary: ReleaseSummary, path: str) -> None:
    """A data file of a gated bucket leaves only through /gated, to a grantee (403 here);
    the card, Croissant, checksums and the open buckets stay public."""
    if gated_file(summary, path, node.access.gated()) is not None:
        raise ForbiddenError(GATED_HINT, field="path")


def ensure_serving(store: Store, summary: ReleaseSummary, path: str, *, federated: bool) -> None:
    """A bucket's files wait (503) while a withdrawn record they may hold awaits its revision."""
    if summary.bucket(path.lstrip("/").split("/", 1)[0]) is None:
        return  # the card, checksums, tombstones: no record content
    reason = store.read(lambda c: withheld(c, summary, federated=federated))
    if reason is not None:
        raise BusyError(
            f"release {summary.name} is being revised ({reason}: a record was withdrawn); "
            "retry in a few seconds",
            field="path",
        )


class ReleasesController(AreaController):
    """Public routes: what each release holds, and its files."""

    @get(
        ["/api/v1/releases", "/releases"],
        sync_to_thread=False,
        operation_class=documented(list[ReleaseSummary]),
    )
    def releases_index(self, node: NamedDependency[Node]) -> Response[bytes]:
        return json_response(node.store.read(list_releases))

    @get(
        ["/api/v1/releases/{version:str}", "/releases/{version:str}"],
        sync_to_thread=False,
        operation_class=documented(ReleaseSummary, problems=(404,)),
    )
    def release_info(self, node: NamedDependency[Node], version: FromPath[str]) -> Response[bytes]:
        number = _release_version(version)
        return json_response(node.store.read(lambda c: get_release(c, number)))

    @route(
        "/releases/{version:str}/release.dsse.json",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(Envelope, problems=(404,)),
    )
    def release_statement_file(self, node: NamedDependency[Node], version: FromPath[str]) -> Download:
        """The release summary (every file's SHA-256) signed by this node's key, as channels ship it."""
        number = _release_version(version)
        summary = node.store.read(lambda c: get_release(c, number))
        # Signed once at the cut and stored with the release: the same bytes on every exit.
        statement = stored_statement(node.data.releases_path / summary.label, summary, node.signer)
        return Download(statement, media_type="application/json")

    @route(
        "/releases/{version:str}/{path:path}",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=_FILE_TYPES, problems=(403, 404, 503)),
    )
    def release_file(
        self, node: NamedDependency[Node], version: FromPath[str], path: FromPath[str]
    ) -> Download:
        number = _release_version(version)
        summary = node.store.read(lambda c: get_release(c, number))
        ensure_public(node, summary, path)
        ensure_serving(node.store, summary, path, federated=False)
        return release_file_download(node.data.releases_path, summary, path)

    @get("/releases/federated", sync_to_thread=False, operation_class=documented(list[ReleaseSummary]))
    def federated_index(self, node: NamedDependency[Node]) -> Response[bytes]:
        return json_response(node.store.read(list_federated_releases))

    @get(
        "/releases/federated/{version:str}",
        sync_to_thread=False,
        operation_class=documented(ReleaseSummary, problems=(404,)),
    )
    def federated_info(self, node: NamedDependency[Node], version: FromPath[str]) -> Response[bytes]:
        number = _release_version(version)
        return json_response(node.store.read(lambda c: get_federated_release(c, number)))

    @route(
        "/releases/federated/{version:str}/release.dsse.json",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(Envelope, problems=(404,)),
    )
    def federated_statement_file(self, node: NamedDependency[Node], version: FromPath[str]) -> Download:
        """The federated release's summary signed by this node's key, stored at its cut."""
        number = _release_version(version)
        summary = node.store.read(lambda c: get_federated_release(c, number))
        folder = node.data.releases_path / "federated" / summary.label
        return Download(stored_statement(folder, summary, node.signer), media_type="application/json")

    @route(
        "/releases/federated/{version:str}/{path:path}",
        http_method=_GET_HEAD,
        sync_to_thread=False,
        operation_class=documented(files=_FILE_TYPES, problems=(403, 404, 503)),
    )
    def federated_file(
        self, node: NamedDependency[Node], version: FromPath[str], path: FromPath[str]
    ) -> Download:
        number = _release_version(version)
        summary = node.store.read(lambda c: get_federated_release(c, number))
        ensure_public(node, summary, path)
        ensure_serving(node.store, summary, path, federated=True)
        return release_file_download(node.data.releases_path / "federated", summary, path)
