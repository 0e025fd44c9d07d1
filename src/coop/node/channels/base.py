"""What every publishing channel shares: the release it ships, its signed statement, its publish record.

A channel takes a release folder (``releases/vN``) as the node cut it and
puts it where model builders look: a git repository, a Hugging Face dataset
repository, a static web site.  Each ships the release's files unchanged,
plus ``release.dsse.json``: the release summary as the node recorded it at the
cut (every file with its SHA-256, ``croissant.json`` included) in a DSSE
envelope signed by the node's key, so a copy found anywhere can be checked
against the co-op's published key.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Final, Protocol

import msgspec

from coop.governance.envelope import open_envelope, seal, valid_signers
from coop.governance.errors import InvalidValueError
from coop.node.errors import NodeError
from coop.node.files import sha256_file
from coop.node.releases.cut import ReleaseSummary

__all__ = [
    "RELEASE_PAYLOAD_TYPE",
    "STATEMENT",
    "ChannelError",
    "Publication",
    "Publisher",
    "ReleaseFolder",
    "commit_title_counts",
    "last_publication",
    "list_publications",
    "record_publication",
    "release_statement",
    "release_tag",
    "verify_release",
]

RELEASE_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.release+json"
STATEMENT: Final = "release.dsse.json"
_SUMMARY: Final = msgspec.json.Decoder(ReleaseSummary)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_MAX_STATEMENT: Final = 16 * 1024 * 1024


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


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    """One release shipped to one channel target: where, as what, when."""

    channel: str
    target: str
    release: str
    ref: str  # the commit, the Hub commit id, the site folder
    records: int
    at: int


class Publisher(Protocol):
    """A channel: publishes releases in order, never rewriting what it published before."""

    name: str
    target: str

    def published(self) -> list[str]:
        """The releases the target already holds, oldest first."""
        ...

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        """Ship one release; returns the reference it got there."""
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


def release_statement(summary: ReleaseSummary, seed: bytes) -> bytes:
    """The release summary with every file's SHA-256, signed: ``release.dsse.json``."""
    return seal(_ENCODER.encode(summary), RELEASE_PAYLOAD_TYPE, [seed])


def verify_release(root: Path, public_key: bytes) -> ReleaseSummary:
    """Check a copy of a release: the statement's signature, then every listed file's SHA-256.

    Raises :class:`ChannelError` naming the first thing that does not check.
    """
    try:
        envelope, payload = open_envelope(
            (root / STATEMENT).read_bytes(), payload_type=RELEASE_PAYLOAD_TYPE, max_bytes=_MAX_STATEMENT
        )
    except OSError as exc:
        raise ChannelError(f"no {STATEMENT}: {exc}", field=STATEMENT) from None
    except InvalidValueError as exc:
        raise ChannelError(f"{STATEMENT} is not a release statement: {exc}", field=STATEMENT) from None
    if public_key.hex() not in valid_signers(envelope, payload, {public_key.hex(): public_key}):
        raise ChannelError("the release statement is not signed by this key", field=STATEMENT)
    try:
        summary = _SUMMARY.decode(payload)
    except msgspec.DecodeError as exc:
        raise ChannelError(
            f"the release statement is not a release summary: {exc}", field=STATEMENT
        ) from None
    if not summary.files:
        raise ChannelError("the release statement lists no files", field=STATEMENT)
    for entry in summary.files:
        path = root / entry.path
        try:
            digest = sha256_file(path)
        except OSError:
            raise ChannelError(f"{entry.path} is missing", field=entry.path) from None
        if digest != entry.sha256:
            raise ChannelError(f"{entry.path} does not match its SHA-256 in the statement", field=entry.path)
    return summary


def record_publication(conn: sqlite3.Connection, publication: Publication) -> None:
    conn.execute(
        "INSERT INTO publications (channel, target, release, ref, records, at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            publication.channel,
            publication.target,
            publication.release,
            publication.ref,
            publication.records,
            publication.at,
        ),
    )


_COLUMNS: Final = "channel, target, release, ref, records, at"


def _publication(row: tuple[str, str, str, str, int, int]) -> Publication:
    return Publication(channel=row[0], target=row[1], release=row[2], ref=row[3], records=row[4], at=row[5])


def list_publications(conn: sqlite3.Connection) -> list[Publication]:
    return [_publication(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM publications ORDER BY id")]


def last_publication(conn: sqlite3.Connection, channel: str) -> Publication | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM publications WHERE channel = ? ORDER BY id DESC LIMIT 1", (channel,)
    ).fetchone()
    return None if row is None else _publication(row)
