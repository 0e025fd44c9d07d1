"""The release statement: ``release.dsse.json``, the summary of one release signed once, when it is made.

The statement is the release summary as the node recorded it (every file with
its SHA-256, ``croissant.json`` included) in a DSSE envelope signed by the
node's key, so a copy found anywhere can be checked against the co-op's key.
It is signed when the release is cut (and when a revision makes its new
folder), stored in the release folder beside the files it vouches for, and
served as stored by every exit: the HTTP route, the git, Hub and site channels.
So one release carries one statement everywhere, even after the node's key is
rotated (it still verifies with the key that signed it).

The statement is not listed in ``SHA256SUMS`` nor in the summary: it signs
them.  A release cut before statements were stored gets one the first time it
is needed, written once (a file linked into place, never replaced).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from coop.governance import Signer
from coop.governance.canonical import canonical_bytes
from coop.governance.envelope import open_envelope, seal, valid_signers
from coop.governance.errors import InvalidValueError
from coop.node.errors import NodeError
from coop.node.files import fsync_dir, fsync_file, sha256_file
from coop.node.releases.model import SUMMARY_DECODER, ReleaseSummary

__all__ = [
    "RELEASE_PAYLOAD_TYPE",
    "STATEMENT",
    "StatementError",
    "release_statement",
    "store_missing_statements",
    "stored_statement",
    "unsigned_releases",
    "verify_release",
    "write_statement",
]

RELEASE_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.release+json"
STATEMENT: Final = "release.dsse.json"
_MAX_STATEMENT: Final = 16 * 1024 * 1024


class StatementError(NodeError):
    """A copy of a release does not check against its statement; ``field`` names the file."""


def release_statement(summary: ReleaseSummary, signer: Signer) -> bytes:
    """The release summary with every file's SHA-256, signed: the bytes of ``release.dsse.json``."""
    return seal(canonical_bytes(summary), RELEASE_PAYLOAD_TYPE, [signer])


def write_statement(folder: Path, summary: ReleaseSummary, signer: Signer) -> bytes:
    """Sign ``summary`` and store it in its (not yet published) release folder, synced to disk."""
    data = release_statement(summary, signer)
    (folder / STATEMENT).write_bytes(data)
    fsync_file(folder / STATEMENT)
    return data


def stored_statement(folder: Path, summary: ReleaseSummary, signer: Signer) -> bytes:
    """The statement stored in the release folder ``folder``, as stored.

    A release cut before statements were stored has none yet: it is signed now and
    stored once (two processes racing both serve the one that landed first).
    """
    path = folder / STATEMENT
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = release_statement(summary, signer)
    tmp = folder / f".{STATEMENT}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_bytes(data)
        fsync_file(tmp)
        os.link(tmp, path)  # never replaces: the first statement stored is the statement
        fsync_dir(folder)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return data  # the folder went (a revision replaced it): nothing to keep this for
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def store_missing_statements(folders: Iterable[tuple[Path, ReleaseSummary]], signer: Signer) -> int:
    """Sign and store the statement of each release folder that has none; how many were signed.

    Run when the node opens, so a release cut before statements were stored is signed by the key
    that cut it, before any key rotation could come between (folders gone are skipped).
    """
    signed = 0
    for folder, summary in folders:
        if folder.is_dir() and not (folder / STATEMENT).exists():
            stored_statement(folder, summary, signer)
            signed += 1
    return signed


def unsigned_releases(conn: sqlite3.Connection, releases: Path) -> list[tuple[Path, ReleaseSummary]]:
    """The served release folders (own and federated) with no statement, and their summaries.

    Cheap enough for every open: one look per folder for its statement, a summary decoded only
    for a folder that lacks one (a folder restored without its statement is found too).
    """
    missing: list[tuple[Path, ReleaseSummary]] = []
    for table, root in (("releases", releases), ("federated_releases", releases / "federated")):
        rows = conn.execute(
            "SELECT version, json_extract(summary, '$.name'),"
            f" coalesce(json_extract(summary, '$.revision'), 1) FROM {table}"
        ).fetchall()
        for version, name, revision in rows:
            folder = root / (name if revision <= 1 else f"{name}-r{revision}")
            if folder.is_dir() and not (folder / STATEMENT).exists():
                (raw,) = conn.execute(f"SELECT summary FROM {table} WHERE version = ?", (version,)).fetchone()
                summary = SUMMARY_DECODER.decode(raw)
                missing.append((root / summary.label, summary))
    return missing


def verify_release(root: Path, public_key: bytes) -> ReleaseSummary:
    """Check a copy of a release: the statement's signature, then every listed file's SHA-256.

    Raises :class:`StatementError` naming the first thing that does not check.
    """
    try:
        envelope, payload = open_envelope(
            (root / STATEMENT).read_bytes(), payload_type=RELEASE_PAYLOAD_TYPE, max_bytes=_MAX_STATEMENT
        )
    except OSError as exc:
        raise StatementError(f"no {STATEMENT}: {exc}", field=STATEMENT) from None
    except InvalidValueError as exc:
        raise StatementError(f"{STATEMENT} is not a release statement: {exc}", field=STATEMENT) from None
    if public_key.hex() not in valid_signers(envelope, payload, {public_key.hex(): public_key}):
        raise StatementError("the release statement is not signed by this key", field=STATEMENT)
    try:
        summary = SUMMARY_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise StatementError(
            f"the release statement is not a release summary: {exc}", field=STATEMENT
        ) from None
    if not summary.files:
        raise StatementError("the release statement lists no files", field=STATEMENT)
    for entry in summary.files:
        path = root / entry.path
        try:
            digest = sha256_file(path)
        except OSError:
            raise StatementError(f"{entry.path} is missing", field=entry.path) from None
        if digest != entry.sha256:
            raise StatementError(
                f"{entry.path} does not match its SHA-256 in the statement", field=entry.path
            )
    return summary
