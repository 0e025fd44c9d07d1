"""What every publishing channel shares: the release it ships, what a channel can do, its names.

A channel takes a release folder (``releases/vN``) as the node cut it and
puts it where model builders look: a git repository, a Hugging Face dataset
repository, a static web site.  Each ships the release's files unchanged,
plus ``release.dsse.json``: the statement the node signed when it cut the
release (:mod:`coop.node.releases.statement`), the same bytes on every channel.

A publisher declares what it can do in :class:`Capabilities`; ``coop publish``
(:mod:`coop.node.channels.publish`) reads those, never the channel's name or class.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Protocol

import msgspec

from coop.node.channels.gated import gated_card, withheld_files
from coop.node.errors import NodeError
from coop.node.releases.card import CARD
from coop.node.releases.model import ReleaseSummary

__all__ = [
    "Capabilities",
    "ChannelError",
    "Publisher",
    "ReleaseFolder",
    "commit_title_counts",
    "release_tag",
]


class ChannelError(NodeError):
    """A channel refused or failed; ``field`` names the option to look at."""


class ReleaseFolder(msgspec.Struct, frozen=True):
    """A cut release on disk, with its summary as the node recorded it (files and checksums).

    ``gated``: the licences (values) whose buckets the co-op gates when it is published: their
    data files are withheld from the channel and the card says where to request access
    (``access_url``) -- see :mod:`coop.node.channels.gated`.
    """

    path: Path
    summary: ReleaseSummary
    gated: frozenset[str] = frozenset()
    access_url: str = ""

    @property
    def name(self) -> str:
        """``vN``, or ``vN-rK`` for revision K: the name a channel publishes it under."""
        return self.summary.label

    def withheld(self) -> frozenset[str]:
        """The data files of gated buckets: never published by a channel."""
        return withheld_files(self.summary, self.gated)

    def files(self) -> list[str]:
        """Every file a channel publishes, relative, in a stable order (SHA256SUMS included;
        the data files of gated buckets left out)."""
        every = {f.path for f in self.summary.files} | {"SHA256SUMS", "release.json"}
        return sorted(every - self.withheld())

    def read(self, relative: str) -> bytes:
        """The bytes a channel publishes as ``relative``: the file as cut, but the card of a
        release with gated buckets says so (:func:`~coop.node.channels.gated.gated_card`)."""
        if relative in self.withheld():
            raise ChannelError(f"{relative} is in a gated bucket: never published", field="release")
        data = (self.path / relative).read_bytes()
        if relative != CARD or not self.withheld():
            return data
        card = gated_card(data.decode("utf-8"), self.summary, self.gated, access_url=self.access_url)
        return card.encode("utf-8")

    def as_cut(self, relative: str) -> bool:
        """Whether ``relative`` is published byte for byte as cut (a link or copy will do)."""
        return relative != CARD or not self.withheld()


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel's target keeps, and so what ``coop publish`` sends it.

    - ``latest_only``: the target's branch holds one release (the Hub): a revision goes
      out only for the newest release it holds, never for an older one.
    - ``rebuilt_whole``: one publish rebuilds the target with every release so far (the
      site): only the newest release it lacks is shipped, once.
    - ``stages_plan``: a dry run stages the exact upload and writes its plan
      (:meth:`Publisher.stage`); other channels' dry runs only list what would go.
    - ``reviewed``: a release goes out for review (a pull request): it is live on the
      channel only once merged, so its publication starts ``open`` in the channel ledger
      (:mod:`coop.node.releases.channel_records`) and is settled later.
    - ``posts``: the channel posts records one by one (a microblog) and writes its own
      ledger rows; ``coop publish`` carries no release-wide rows for it.
    """

    latest_only: bool = False
    rebuilt_whole: bool = False
    stages_plan: bool = False
    reviewed: bool = False
    posts: bool = False


class Publisher(Protocol):
    """A channel: publishes releases in order, never rewriting what it published before."""

    name: str
    target: str
    capabilities: Capabilities

    def published(self) -> list[str]:
        """The releases the target already holds, oldest first."""
        ...

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        """Ship one release; returns the reference it got there."""
        ...

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        """A dry run: stage the release as it would go and return the plan written (None: nothing
        to stage).  Sends nothing."""
        ...


_TAG: Final = re.compile(r"^v([0-9]{1,15})(?:-r([0-9]{1,15}))?$")  # ASCII: \d takes any digit


def release_tag(name: str) -> tuple[int, int] | None:
    """``v3`` -> (3, 1), ``v3-r2`` -> (3, 2): a release's version and revision; None otherwise."""
    match = _TAG.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 1)


def commit_title_counts(summary: ReleaseSummary) -> str:
    """``3 records, 1 withdrawn``: what a commit title says of a release."""
    noun = "record" if summary.records == 1 else "records"
    return f"{summary.records} {noun}, {summary.tombstones} withdrawn"
