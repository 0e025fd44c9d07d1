"""The data directory: where a node keeps its database, secrets, config and releases.

Layout::

    DIR/                 mode 0700
      node.toml          the configuration
      coop.sqlite3       the database (WAL)
      keys/node.key      Ed25519 seed, 0600
      keys/salt          HMAC salt for contributor hashes, 0600
      releases/vN/       immutable release artifacts
      locks/             advisory locks (processor, releases)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import msgspec
from nacl.signing import SigningKey

from coop.node.config import Config, NodeSection, load_config, write_config
from coop.node.errors import BusyError, StorageError

__all__ = ["DataDir", "Identity"]

_SECRET_MODE: Final = 0o600


class Identity(msgspec.Struct, frozen=True):
    """The node's public identity: its id is the hex Ed25519 public key."""

    node_id: str
    public_key: bytes
    fingerprint: str


class DataDir:
    """Paths and secrets of one node's data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def config_path(self) -> Path:
        return self.root / "node.toml"

    @property
    def db_path(self) -> Path:
        return self.root / "coop.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.root / "keys" / "node.key"

    @property
    def salt_path(self) -> Path:
        return self.root / "keys" / "salt"

    @property
    def releases_path(self) -> Path:
        return self.root / "releases"

    @property
    def locks_path(self) -> Path:
        return self.root / "locks"

    @classmethod
    def create(cls, root: Path, *, name: str) -> DataDir:
        """Make a new data directory; refuses one that already holds a node."""
        if (root / "node.toml").exists():
            raise StorageError(f"{root} already holds a node (node.toml exists)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o700)
            for sub in ("keys", "releases", "locks"):
                (root / sub).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {root}: {exc}") from exc
        data = cls(root)
        _write_secret(data.key_path, bytes(SigningKey.generate()))
        _write_secret(data.salt_path, secrets.token_bytes(32))
        write_config(data.config_path, Config(node=NodeSection(name=name)))
        return data

    @classmethod
    def open(cls, root: Path) -> DataDir:
        data = cls(root)
        if not data.config_path.exists():
            raise StorageError(f"{root} is not a data directory (run `coop init {root}` first)")
        return data

    def config(self) -> Config:
        return load_config(self.config_path)

    def signing_key(self) -> SigningKey:
        return SigningKey(_read_secret(self.key_path, 32))

    def salt(self) -> bytes:
        return _read_secret(self.salt_path, 32)

    def identity(self) -> Identity:
        public = bytes(self.signing_key().verify_key)
        digest = hashlib.sha256(public).hexdigest()
        fingerprint = ":".join(digest[i : i + 4] for i in range(0, 16, 4))
        return Identity(node_id=public.hex(), public_key=public, fingerprint=fingerprint)

    @contextmanager
    def lock(self, name: str, *, purpose: str) -> Iterator[None]:
        """Hold an advisory lock; the kernel releases it if the process dies (kill -9)."""
        self.locks_path.mkdir(mode=0o700, exist_ok=True)
        path = self.locks_path / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise BusyError(f"{purpose} is already running ({holder})") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)


def _write_secret(path: Path, data: bytes) -> None:
    # Create with 0600 from the start: never a moment where the secret is world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _SECRET_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret(path: Path, size: int) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise StorageError(f"{path} is readable by others (mode {mode:o}); run chmod 600 {path}")
    if len(data) != size:
        raise StorageError(f"{path} is damaged: expected {size} bytes, found {len(data)}")
    return data
