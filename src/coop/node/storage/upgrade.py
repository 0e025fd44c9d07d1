"""Upgrading a data directory made by an earlier version, and saying beforehand what will change.

Opening a node upgrades it in place: the migrations (with the repairs of
:mod:`~coop.node.storage.repairs`) bring the database to the current schema, and sections that
moved out of ``node.toml`` (``[defaults]``: now the collective settings) are read once, put where
they live now, recorded in the audit log, and removed from the file (rewritten atomically, the
original kept as ``node.toml.bak``).  :func:`plan_upgrade` lists what opening a directory will
change without writing anything (``coop upgrade DIR --dry-run``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import tomli_w

from coop.governance import Defaults, GovernanceError, Settings
from coop.node.config import MOVED_SECTIONS
from coop.node.errors import StorageError
from coop.node.files import fsync_dir
from coop.node.storage.migrations import MIGRATIONS, NAMES, SCRUBBING
from coop.node.storage.repairs import REPAIRS, has_column, has_table

__all__ = ["MovedConfig", "plan_upgrade", "read_moved_config", "remove_moved_config"]


class MovedConfig(msgspec.Struct, frozen=True):
    """The sections of ``node.toml`` that moved elsewhere, as the file holds them."""

    sections: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sections)

    def values(self) -> dict[str, Any]:
        """Each moved key, dotted (``defaults.license``), with its value as written."""
        return {f"{name}.{key}": value for name, body in self.sections.items() for key, value in body.items()}

    def initial_settings(self) -> Settings:
        """The collective settings a node without any starts from: the moved ``[defaults]``."""
        try:
            defaults = msgspec.convert(self.sections.get("defaults", {}), Defaults)
        except (msgspec.ValidationError, GovernanceError, ValueError) as exc:
            raise StorageError(
                f"invalid node.toml [defaults] (moving into the collective settings): {exc}"
            ) from exc
        return Settings(defaults=defaults)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise StorageError(f"{path} not found: is this a data directory made by `coop init`?") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc


def read_moved_config(path: Path) -> MovedConfig:
    """The moved sections ``node.toml`` still holds (none: an empty, falsy result)."""
    _, raw = _read_toml(path)
    sections: dict[str, dict[str, Any]] = {}
    for name in MOVED_SECTIONS:
        if name in raw:
            body = raw[name]
            if not isinstance(body, dict):
                raise StorageError(f"invalid node.toml: `{name}` must be a table")
            sections[name] = body
    return MovedConfig(sections=sections)


def remove_moved_config(path: Path) -> None:
    """``node.toml`` without the moved sections, written atomically; the original kept as ``.bak``.

    The sections' lines are cut from the text, so the operator's comments elsewhere survive; if
    the file writes them some other way (dotted keys, inline tables), it is written anew.
    """
    text, raw = _read_toml(path)
    if not any(name in raw for name in MOVED_SECTIONS):
        return
    kept = {key: value for key, value in raw.items() if key not in MOVED_SECTIONS}
    new_text = _cut_sections(text, MOVED_SECTIONS)
    try:
        if tomllib.loads(new_text) != kept:
            new_text = tomli_w.dumps(kept)
    except tomllib.TOMLDecodeError:
        new_text = tomli_w.dumps(kept)
    _write_atomic(path.with_name(path.name + ".bak"), text)
    _write_atomic(path, new_text)


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")


def _cut_sections(text: str, names: dict[str, str] | frozenset[str]) -> str:
    """``text`` without the ``[name]`` tables (and their ``[name.sub]`` tables) named."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            table = header.group(1).strip().strip('"')
            skipping = any(table == name or table.startswith(f"{name}.") for name in names)
        if not skipping:
            out.append(line)
    return "".join(out)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc}") from exc


# -- the dry run ------------------------------------------------------------------------------


def plan_upgrade(root: Path) -> list[str]:
    """What opening the data directory ``root`` will change, one line each; writes nothing.

    Migrations to apply (by number and name), repairs of a database whose history differs,
    config keys that move out of ``node.toml``, and the one-time steps an opening node takes.
    An empty list: the directory is current.
    """
    config_path = root / "node.toml"
    if not config_path.exists():
        raise StorageError(f"{root} is not a data directory (no node.toml)")
    db_path = root / "coop.sqlite3"
    if not db_path.exists():
        raise StorageError(f"{root} has no database ({db_path.name})")
    moved = read_moved_config(config_path)
    conn = _read_only(db_path)
    try:
        lines = _plan(conn, moved)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {db_path}: {exc}") from exc
    finally:
        conn.close()
    unsigned = _without_statement(root / "releases")
    if unsigned:
        lines.append(
            f"{len(unsigned)} release folder(s) cut before statements were stored get release.dsse.json,"
            f" signed once by this node's key: {', '.join(unsigned[:5])}{' …' if len(unsigned) > 5 else ''}"
        )
    return lines


def _without_statement(releases: Path) -> list[str]:
    """Release folders (own and federated) that hold no signed statement yet."""
    found = []
    for parent in (releases, releases / "federated"):
        if parent.is_dir():
            for folder in sorted(parent.iterdir()):
                if (
                    folder.is_dir()
                    and folder.name.startswith("v")
                    and not (folder / "release.dsse.json").exists()
                ):
                    found.append(str(folder.relative_to(releases)))
    return found


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write (nor create the WAL files of a stopped node)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return conn


def _plan(conn: sqlite3.Connection, moved: MovedConfig) -> list[str]:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    latest = len(MIGRATIONS)
    if version > latest:
        raise StorageError(f"database schema {version} is newer than this program ({latest})")
    lines: list[str] = []
    if moved:
        settings_version = 0
        if has_table(conn, "settings"):
            (settings_version,) = conn.execute("SELECT coalesce(max(version), 0) FROM settings").fetchone()
        moved.initial_settings()  # refuse now what the opening would refuse
        for key, value in moved.values().items():
            lines.append(f"node.toml: {key} = {value!r} moves into the collective settings")
        if settings_version:
            lines.append(
                f"the co-op already has settings (version {settings_version}): they stay; the moved keys"
                " are recorded in the audit log (config.moved) and not applied"
            )
        else:
            lines.append(
                "they become settings version 1, recorded in the audit log (settings.init, config.moved)"
            )
        sections = ", ".join(f"[{name}]" for name in moved.sections)
        lines.append(f"node.toml is rewritten without {sections}; the original is kept as node.toml.bak")
    for number in range(version + 1, latest + 1):
        for repair in REPAIRS:
            if repair.before == number and repair.needed(conn):
                lines.append(f"repair {repair.name} (before migration {number}): {repair.description}")
        lines.append(f"migration {number}: {NAMES[number - 1]}")
    if version and SCRUBBING.intersection(range(version + 1, latest + 1)):
        lines.append("then VACUUM: what the scrubbing migrations erase leaves no copy in free pages")
    if version < latest:
        lines.append(f"database schema {version} -> {latest}")
    if has_table(conn, "members") and (
        not has_column(conn, "members", "pseudonym")
        or conn.execute("SELECT 1 FROM members WHERE pseudonym IS NULL LIMIT 1").fetchone()
    ):
        lines.append("members without one get a random default pseudonym, and their names are claimed")
    releases = has_table(conn, "releases") and conn.execute("SELECT 1 FROM releases LIMIT 1").fetchone()
    reform = version < 12 or (
        has_table(conn, "upgrade_steps")
        and conn.execute("SELECT 1 FROM upgrade_steps WHERE name = 'reform-releases'").fetchone()
    )
    if releases and reform:
        lines.append("releases already cut are revised once into their public form (reform-releases)")
    return lines
