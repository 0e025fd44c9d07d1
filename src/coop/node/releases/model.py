"""What a release is: its summary (buckets, files, checksums) as the node records it at the cut.

A :class:`ReleaseSummary` is stored in the ``releases`` (or ``federated_releases``)
row, written as ``release.json`` in the release folder, and signed as the
release statement.  This module holds the types and the few pure functions
over them (a bucket's ``Content-Usage``, ``robots.txt``); it loads no Parquet
and touches no database, so anything may read a summary cheaply.
"""

from __future__ import annotations

from typing import Final

import msgspec

from coop.governance import AiUse, License, Preference, parse_ai_use

__all__ = [
    "SUMMARY_DECODER",
    "SUMMARY_ENCODER",
    "BucketSummary",
    "FileEntry",
    "ReleaseSummary",
    "bucket_content_usage",
    "robots_txt",
]


class FileEntry(msgspec.Struct, frozen=True):
    path: str
    sha256: str
    bytes: int


class BucketSummary(msgspec.Struct, frozen=True):
    name: str
    license: License
    records: int
    content_usage: str
    labels: dict[str, int]
    languages: dict[str, int]
    files: tuple[FileEntry, ...]


class ReleaseSummary(msgspec.Struct, frozen=True):
    version: int
    name: str
    coop: str
    node_id: str
    created_at: int
    records: int
    buckets: tuple[BucketSummary, ...]
    tombstones: int
    files: tuple[FileEntry, ...]
    origins: tuple[str, ...] = ()  # a federated release: the co-ops whose records it combines
    # 1 as cut; each rewrite that removes withdrawn records (coop.node.releases.revision) adds one.
    revision: int = 1

    def bucket(self, name: str) -> BucketSummary | None:
        return next((b for b in self.buckets if b.name == name), None)

    @property
    def label(self) -> str:
        """``vN`` as cut, ``vN-rK`` from revision K on: its folder on disk and its tag in channels.

        The URL stays ``/releases/vN/...`` whatever the revision.
        """
        return self.name if self.revision <= 1 else f"{self.name}-r{self.revision}"


SUMMARY_ENCODER: Final = msgspec.json.Encoder(order="sorted")
SUMMARY_DECODER: Final = msgspec.json.Decoder(ReleaseSummary)


def bucket_content_usage(preferences: list[str]) -> str:
    """The Content-Usage of a bucket: the most restrictive of its records' preferences.

    A label is ``y`` only if every record says ``y``; ``n`` if any says ``n``
    (keeping a CC signal only when every refusal carries the same one);
    otherwise the bucket states nothing for it.  Each row keeps its own
    ``ai_use`` too.
    """
    parsed = [parse_ai_use(p).value for p in preferences]
    out: dict[str, Preference] = {}
    for attr in ("train_ai", "search"):
        prefs = [getattr(p, attr) for p in parsed]
        refusals = [p for p in prefs if p is not None and not p.allow]
        if refusals:
            signals = {p.exceptions for p in refusals}
            out[attr] = Preference(allow=False, exceptions=signals.pop() if len(signals) == 1 else None)
        elif prefs and all(p is not None for p in prefs):
            out[attr] = Preference(allow=True)
    return AiUse(train_ai=out.get("train_ai"), search=out.get("search")).to_header()


def robots_txt(coop: str, releases: list[ReleaseSummary], *, fallback: str, disallow: tuple[str, ...]) -> str:
    """``robots.txt`` with the AI-use preferences: the site's overall, then each bucket's own."""
    lines = [f"# {coop}: a Co-op Flywheel node", "User-Agent: *"]
    lines += [f"Disallow: {path}" for path in disallow]
    lines.append("Allow: /releases/")
    usages = [b.content_usage for r in releases for b in r.buckets if b.content_usage]
    lines.append(f"Content-Usage: {bucket_content_usage(usages) if usages else fallback}")
    for release in releases:
        for bucket in release.buckets:
            if bucket.content_usage:
                lines.append(f"Content-Usage: /releases/{release.name}/{bucket.name}/ {bucket.content_usage}")
    return "\n".join(lines) + "\n"
