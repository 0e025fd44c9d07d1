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

from coop.node.errors import NodeError
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
    """A cut release on disk, with its summary as the node recorded it (files and checksums)."""

    path: Path
    summary: ReleaseSummary

    @property
    def name(self) -> str:
        """``vN``, or ``vN-rK`` for revision K: the name a channel publishes it under."""
        return self.summary.label

    def files(self) -> list[str]:
        """Every file of the release, relative, in a stable order (SHA256SUMS included)."""
        return sorted({f.path for f in self.summary.files} | {"SHA256SUMS", "release.json"})


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel's target keeps, and so what ``coop publish`` sends it.

    - ``latest_only``: the target's branch holds one release (the Hub): a revision goes
      out only for the newest release it holds, never for an older one.
    - ``rebuilt_whole``: one publish rebuilds the target with every release so far (the
      site): only the newest release it lacks is shipped, once.
    - ``stages_plan``: a dry run stages the exact upload and writes its plan
      (:meth:`Publisher.stage`); other channels' dry runs only list what would go.
    """

    latest_only: bool = False
    rebuilt_whole: bool = False
    stages_plan: bool = False


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
