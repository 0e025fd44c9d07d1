"""The audit log's signed head on disk: read it, and move it forward after each commit.

The head (latest entry number and hash, signed with the node's key; see
:mod:`coop.governance.audit` for what it does and does not protect against) is a
small JSON file in the data directory, mode 0600, replaced atomically (written
beside, fsynced, renamed, directory fsynced).  It lives outside the database on
purpose: whoever deletes rows from ``audit_log`` cannot take the head with them.

:class:`HeadKeeper` runs after every commit of the process's writer.  It moves the
head forward only along the chain: the entry the old head names must still be in
the log with the same hash.  When the log is behind the head, or has another entry
where the head points, it leaves the file alone (that is the evidence
``coop audit verify`` reports) and logs an error.  With no head file (a data
directory from before heads existed) it writes one only once a new entry is
appended, never merely because the node was opened: opening must not bless a log
as it finds it.

The head is written only after its entry has committed, so a crashed process leaves
it behind (a warning), never ahead.  With ``storage.synchronous = "normal"`` a power
cut can lose the last commits while the fsynced head survives: verification then
reports those entries as cut off, which is what happened to them.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from coop.governance.audit import AuditHead, sign_head
from coop.governance.signing import Signer
from coop.node.errors import BusyError, StorageError
from coop.node.files import fsync_dir
from coop.node.storage.datadir import DataDir

__all__ = ["HeadKeeper", "latest_entry", "read_head", "write_head"]

log = logging.getLogger(__name__)

_MODE: Final = 0o600
_MAX_BYTES: Final = 4096
_DECODER: Final = msgspec.json.Decoder(AuditHead)


def read_head(path: Path) -> AuditHead | None:
    """The signed head, or None when there is none yet; a damaged file is a StorageError."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read the audit log's signed head {path}: {exc.strerror}") from exc
    if len(data) > _MAX_BYTES:
        raise StorageError(f"the audit log's signed head {path} is damaged (too large)")
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise StorageError(f"the audit log's signed head {path} is damaged: {exc}") from exc


def write_head(path: Path, head: AuditHead) -> None:
    """Replace the head file atomically: it is either the old head or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE)
    try:
        try:
            os.write(fd, msgspec.json.encode(head) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def latest_entry(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """(seq, hash) of the log's last entry."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


class HeadKeeper:
    """Moves the signed head forward after each commit that appended to the log."""

    def __init__(self, data: DataDir, signer: Callable[[], Signer], opened: tuple[int, str] | None) -> None:
        self.data = data
        self.signer = signer  # the key signing now (it changes when the key is rotated)
        self._lock = threading.Lock()
        # What the log held when the node was opened: a missing head is written only past it.
        self._opened = opened
        self._seen = opened

    def __call__(self, conn: sqlite3.Connection) -> None:
        latest = latest_entry(conn)
        if latest is None or latest == self._seen:
            return  # nothing appended: one indexed lookup per commit, no file touched
        with self._lock:
            try:
                with self.data.lock("audit-head", purpose="writing the audit head", wait=5):
                    # Under the lock, from the database itself: another process may have appended.
                    latest = latest_entry(conn)
                    if latest is not None:
                        self._advance(conn, latest)
            except BusyError as exc:
                log.warning("audit head not written now (%s); the next entry writes it", exc)
                return
            self._seen = latest

    def _advance(self, conn: sqlite3.Connection, latest: tuple[int, str]) -> None:
        path = self.data.audit_head_path
        try:
            current = read_head(path)
        except StorageError as exc:
            log.error("%s; leaving it for coop audit verify to report", exc.message)
            return
        seq, digest = latest
        if current is None:
            if self._opened is not None and seq <= self._opened[0]:
                return  # no head yet, and nothing appended since the node was opened
        elif (current.seq, current.hash) == latest:
            return
        else:
            row = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (current.seq,)).fetchone()
            if current.seq >= seq or row is None or row[0] != current.hash:
                log.error(
                    "the audit log (last entry %d) does not contain the entry its signed head names (%d):"
                    " entries were cut off; the head is kept as evidence (coop audit verify)",
                    seq,
                    current.seq,
                )
                return
        write_head(path, sign_head(seq, digest, self.signer()))
