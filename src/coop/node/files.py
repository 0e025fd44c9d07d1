"""Small file helpers shared by releases, backups and channels (a file's SHA-256, fsync), and the
rules of serving a file over HTTP: byte ranges and conditional requests (RFC 9110 §13, §14).

The serving rules are pure: they take the request's header values and the file's validators
and say what to answer; :mod:`coop.node.http.download` does the I/O around them.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Final

import msgspec

__all__ = [
    "Answer",
    "ByteRange",
    "Plan",
    "evaluate_request",
    "fsync_dir",
    "fsync_file",
    "parse_range",
    "sha256_file",
]


def sha256_file(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- serving: ranges and preconditions ----------------------------------------------------------

_MAX_RANGE_HEADER: Final = 1000
_MAX_DIGITS: Final = 18  # more is larger than any file: read as "beyond the end"
_ENTITY_TAG: Final = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


class ByteRange(msgspec.Struct, frozen=True):
    """Bytes ``first`` to ``last`` (inclusive) of a representation of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def satisfiable(self) -> bool:
        return self.first < self.size

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        if not self.satisfiable:
            return f"bytes */{self.size}"
        return f"bytes {self.first}-{self.last}/{self.size}"


def _position(text: str) -> int | None:
    text = text.strip()
    if not text or not (text.isascii() and text.isdigit()):
        return None
    return 10**_MAX_DIGITS if len(text) > _MAX_DIGITS else int(text)


def parse_range(value: str, size: int) -> ByteRange | None:
    """The one byte range a ``Range`` header asks for, or None to answer the whole file.

    None for a malformed header, another unit or several ranges (answered whole, as
    RFC 9110 allows); a range starting at or beyond the end is returned unsatisfiable.
    An empty file is always answered whole.
    """
    if len(value) > _MAX_RANGE_HEADER or size <= 0:
        return None
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p for p in specs.split(",") if p.strip()]
    if len(parts) != 1:
        return None
    first_text, dash, last_text = parts[0].partition("-")
    if not dash:
        return None
    if not first_text.strip():  # a suffix: the last n bytes
        suffix = _position(last_text)
        if suffix is None:
            return None
        if suffix == 0:
            return ByteRange(size, size - 1, size)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    first = _position(first_text)
    if first is None:
        return None
    if not last_text.strip():
        last = size - 1
    else:
        given = _position(last_text)
        if given is None or given < first:
            return None
        last = min(given, size - 1)
    if first >= size:
        return ByteRange(size, size - 1, size)
    return ByteRange(first, last, size)


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """``(weak, tag)`` pairs of an ``If-Match``/``If-None-Match`` list; None when malformed."""
    tags: list[tuple[bool, str]] = []
    position = 0
    text = value.strip()
    while position < len(text):
        match = _ENTITY_TAG.match(text, position)
        if match is None or match.end() == position:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags


def _http_date(value: str) -> int | None:
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Answer(enum.StrEnum):
    FULL = "full"  # 200 with the whole file
    PARTIAL = "partial"  # 206 with one range
    NOT_MODIFIED = "not_modified"  # 304
    UNSATISFIABLE = "unsatisfiable"  # 416
    PRECONDITION_FAILED = "precondition_failed"  # 412


class Plan(msgspec.Struct, frozen=True):
    answer: Answer
    range: ByteRange | None = None


def evaluate_request(headers: Mapping[str, str], *, etag: str, modified: int | None, size: int) -> Plan:
    """What to answer a GET or HEAD of a file with this strong ``etag`` (quoted) and mtime.

    The preconditions in RFC 9110 §13.2.2's order: If-Match, If-Unmodified-Since,
    If-None-Match (weak comparison), If-Modified-Since, then Range with If-Range (strong).
    """

    def header(name: str) -> str | None:
        value = headers.get(name)
        return None if value is None else value.strip()

    if_match = header("if-match")
    if if_match is not None:
        if if_match != "*":
            tags = _entity_tags(if_match) or []
            if not any(not weak and tag == etag for weak, tag in tags):
                return Plan(Answer.PRECONDITION_FAILED)
    else:
        since = header("if-unmodified-since")
        date = None if since is None else _http_date(since)
        if date is not None and modified is not None and modified > date:
            return Plan(Answer.PRECONDITION_FAILED)
    if_none_match = header("if-none-match")
    if if_none_match is not None:
        if if_none_match == "*" or any(tag == etag for _, tag in _entity_tags(if_none_match) or []):
            return Plan(Answer.NOT_MODIFIED)
    else:
        since = header("if-modified-since")
        date = None if since is None else _http_date(since)
        if date is not None and modified is not None and modified <= date:
            return Plan(Answer.NOT_MODIFIED)
    wanted = header("range")
    if wanted is None:
        return Plan(Answer.FULL)
    if_range = header("if-range")
    if if_range is not None:
        if if_range.startswith(("W/", '"')):
            current = if_range == etag  # a weak tag never matches: strong comparison
        else:
            date = _http_date(if_range)
            current = date is not None and modified is not None and date == modified
        if not current:
            return Plan(Answer.FULL)
    chosen = parse_range(wanted, size)
    if chosen is None:
        return Plan(Answer.FULL)
    if not chosen.satisfiable:
        return Plan(Answer.UNSATISFIABLE, chosen)
    return Plan(Answer.PARTIAL, chosen)
