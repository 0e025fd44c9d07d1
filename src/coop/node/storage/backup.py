"""``coop backup DIR OUT``: a consistent copy of a running node, restorable as a data directory.

The database is copied with SQLite's online backup API, which takes a
consistent snapshot while the node keeps serving (no need to stop it); the
copy is then checked with ``PRAGMA integrity_check``.  The keys and the salt are
copied with mode 0600 (they are what lets the co-op sign and what keeps
contributor hashes stable: lose them and every peer must re-pin the node), with
``node.toml``, ``terms.txt`` and the release folders.  Everything is written in
a hidden folder beside ``OUT`` and renamed at the end, so a backup interrupted
halfway never looks complete.  ``OUT`` is itself a data directory: restoring is
moving it into place.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Final

import msgspec

from coop.node.errors import InputError, StorageError
from coop.node.files import fsync_dir, fsync_file
from coop.node.storage.datadir import DataDir

__all__ = ["BackupReport", "backup"]

_PAGES_PER_STEP: Final = 4096  # ~32 MB per step at 8 KiB pages: writers wait only briefly
_SECRET: Final = 0o600


class BackupReport(msgspec.Struct, frozen=True):
    out: str
    database_bytes: int
    releases: int
    files: int
    integrity: str


def backup(data: DataDir, out: Path) -> BackupReport:
    """Copy the node at ``data`` into ``out`` (which must not exist, or be an empty folder)."""
    out = out.absolute()
    root = data.root.resolve()
    if out.resolve() == root or root in out.resolve().parents:
        raise InputError("write the backup outside the node's data directory", field="OUT")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose a new folder", field="OUT")
    if not data.db_path.exists():
        raise InputError(f"{data.root} is not a node's data directory", field="DIR")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        report = _copy(data, tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return msgspec.structs.replace(report, out=str(out))


def _copy(data: DataDir, tmp: Path) -> BackupReport:
    target = DataDir(tmp)
    # 0. The audit log's signed head, read before the database: the copy's log then reaches at
    # least as far as its head (a head behind the log only warns; one ahead would read as a cut).
    try:
        head = data.audit_head_path.read_bytes()
    except FileNotFoundError:
        head = None
    # 1. The database, by the online backup API: a consistent snapshot of a live node.
    source = sqlite3.connect(f"file:{data.db_path}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(target.db_path)
        try:
            source.backup(copy, pages=_PAGES_PER_STEP)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            (integrity,) = copy.execute("PRAGMA integrity_check").fetchone()
        finally:
            copy.close()
    finally:
        source.close()
    if integrity != "ok":
        raise StorageError(f"the copied database failed its integrity check: {integrity}", field="database")
    os.chmod(target.db_path, _SECRET)
    files = 1
    # 2. Secrets: keys (current and retired) and the salt, private to the operator.
    keys = tmp / "keys"
    keys.mkdir(mode=0o700)
    for path in sorted((data.root / "keys").iterdir()):
        if path.is_file():
            shutil.copyfile(path, keys / path.name)
            os.chmod(keys / path.name, _SECRET)
            files += 1
    if head is not None:
        target.audit_head_path.write_bytes(head)
        os.chmod(target.audit_head_path, _SECRET)
        files += 1
    # 3. Configuration and terms.
    for name in ("node.toml", "terms.txt"):
        if (data.root / name).is_file():
            shutil.copyfile(data.root / name, tmp / name)
            os.chmod(tmp / name, _SECRET)
            files += 1
    # 4. Releases as cut (only folders the database recorded; half-written cuts are left out).
    releases = 0
    recorded = _recorded_releases(target.db_path)
    (tmp / "releases").mkdir(mode=0o700)
    for relative in recorded:
        folder = data.releases_path / relative
        if folder.is_dir():
            shutil.copytree(folder, tmp / "releases" / relative)
            files += sum(1 for p in (tmp / "releases" / relative).rglob("*") if p.is_file())
            releases += 1
    for path in tmp.rglob("*"):
        if path.is_file():
            fsync_file(path)
    return BackupReport(
        out=str(tmp),
        database_bytes=target.db_path.stat().st_size,
        releases=releases,
        files=files,
        integrity=integrity,
    )


class _Folder(msgspec.Struct):
    """The folder a release row names: ``vN``, or ``vN-rK`` once revised (coop.node.releases.revision)."""

    name: str
    revision: int = 1

    @property
    def label(self) -> str:
        return self.name if self.revision <= 1 else f"{self.name}-r{self.revision}"


_FOLDER: Final = msgspec.json.Decoder(_Folder)


def _recorded_releases(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        own = [
            _FOLDER.decode(s).label for (s,) in conn.execute("SELECT summary FROM releases ORDER BY version")
        ]
        federated = [
            f"federated/{_FOLDER.decode(s).label}"
            for (s,) in conn.execute("SELECT summary FROM federated_releases ORDER BY version")
        ]
    finally:
        conn.close()
    return own + federated
