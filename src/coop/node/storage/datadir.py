"""The data directory: where a node keeps its database, secrets, config and releases.

Layout::

    DIR/                 mode 0700
      node.toml          the configuration
      coop.sqlite3       the database (WAL)
      keys/node.key      Ed25519 seed, 0600
      keys/node.key.staged  a rotation's new seed until its manifest is accepted, 0600
      keys/salt          HMAC salt for contributor hashes, 0600
      audit-head.json    the audit log's signed head (latest entry and hash), 0600
      releases/vN/       immutable release artifacts
      locks/             advisory locks (serve: held for a server's life; processor, releases, ...)
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import msgspec
from nacl.signing import SigningKey

from coop.governance import fingerprint, public_key
from coop.node.config import Config, NodeSection, load_config, write_config
from coop.node.errors import BusyError, StorageError

__all__ = ["SERVE_LOCK", "DataDir", "Identity"]

_SECRET_MODE: Final = 0o600
# Held by `coop serve` for the server's life: one server per data directory.
SERVE_LOCK: Final = "serve"


class Identity(msgspec.Struct, frozen=True):
    """The node's public identity: its id is the hex Ed25519 public key."""

    node_id: str
    public_key: bytes
    fingerprint: str  # of the node id (what peers pin and read aloud), the same after a key rotation


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
    def node_id_path(self) -> Path:
        return self.root / "keys" / "node.id"

    @property
    def salt_path(self) -> Path:
        return self.root / "keys" / "salt"

    @property
    def audit_head_path(self) -> Path:
        """The audit log's signed head: outside the database, so that cutting rows shows."""
        return self.root / "audit-head.json"

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
        key = SigningKey.generate()
        _write_secret(data.key_path, bytes(key))
        # The node id is its first public key, kept even after the key is rotated.
        data.node_id_path.write_text(bytes(key.verify_key).hex() + "\n", encoding="ascii")
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
        """The node id (its first key, for ever) and the key that signs now."""
        public = bytes(self.signing_key().verify_key)
        try:
            node_id = self.node_id_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            node_id = public.hex()
        return Identity(node_id=node_id, public_key=public, fingerprint=fingerprint(bytes.fromhex(node_id)))

    @property
    def staged_key_path(self) -> Path:
        """A new signing key waiting for its rotation manifest to be accepted."""
        return self.root / "keys" / "node.key.staged"

    def stage_key(self) -> bytes:
        """A new signing key written beside the current one (which stays the one that signs).

        Returns its seed.  :meth:`commit_staged_key` switches to it once its rotation manifest
        is accepted; :meth:`discard_staged_key` takes it back on any failure.
        """
        new = bytes(SigningKey.generate())
        self.staged_key_path.unlink(missing_ok=True)  # a rotation that never finished
        _write_secret(self.staged_key_path, new)
        return new

    def staged_key(self) -> bytes | None:
        """The staged key's seed, if a rotation is under way (or was cut short)."""
        if not self.staged_key_path.exists():
            return None
        return _read_secret(self.staged_key_path, 32)

    def commit_staged_key(self) -> None:
        """Sign with the staged key from now on; the old key is kept, retired, beside it."""
        old = bytes(self.signing_key())
        retired = self.key_path.with_name(f"node.key.{public_key(old).hex()[:16]}.retired")
        if not retired.exists():
            _write_secret(retired, old)
        os.replace(self.staged_key_path, self.key_path)  # atomic: one key or the other, never none
        _fsync_dir(self.key_path.parent)

    def discard_staged_key(self) -> None:
        """Roll a rotation back: the current key stays the one that signs."""
        self.staged_key_path.unlink(missing_ok=True)

    @contextmanager
    def lock(self, name: str, *, purpose: str, wait: float = 0.0) -> Iterator[None]:
        """Hold an advisory lock; the kernel releases it if the process dies (kill -9).

        With ``wait``, try again for that many seconds before giving up.
        """
        self.locks_path.mkdir(mode=0o700, exist_ok=True)
        path = self.locks_path / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
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
