"""The co-op's collective settings in the store: every version kept, each change audited.

An admin changes a setting directly only where the decision rules let one act alone;
anything else goes through a proposal (:mod:`coop.node.collective.proposals`).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

import msgspec

from coop.governance import (
    PolicyError,
    SettingClass,
    Settings,
    Signer,
    apply_changes,
    changed_classes,
    settings_digest,
)
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import ForbiddenError
from coop.node.storage.store import next_tick

__all__ = [
    "Actor",
    "SettingsView",
    "adopt_moved_config",
    "change_settings",
    "current_settings",
    "ensure_settings",
    "setting_class_names",
    "settings_version",
    "store_settings",
]

_SETTINGS: Final = msgspec.json.Decoder(Settings)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


class Actor(msgspec.Struct, frozen=True):
    """Who acts, by public handle; ``admin`` says whether they may act alone where rules allow."""

    name: str
    admin: bool


class SettingsView(msgspec.Struct, frozen=True):
    version: int
    digest: str
    at: int
    actor: str
    via: str
    settings: Settings


def settings_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM settings").fetchone()
    return int(version)


def current_settings(conn: sqlite3.Connection) -> SettingsView:
    row = conn.execute(
        "SELECT version, digest, at, actor, via, body FROM settings ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return SettingsView(
            version=0, digest=settings_digest(Settings()), at=0, actor="", via="", settings=Settings()
        )
    return SettingsView(
        version=row[0], digest=row[1], at=row[2], actor=row[3], via=row[4], settings=_SETTINGS.decode(row[5])
    )


def store_settings(
    conn: sqlite3.Connection, settings: Settings, *, at: int, actor: str, via: str
) -> SettingsView:
    (version,) = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM settings").fetchone()
    digest = settings_digest(settings)
    conn.execute(
        "INSERT INTO settings (version, at, actor, via, body, digest) VALUES (?, ?, ?, ?, ?, ?)",
        (version, at, actor, via, _ENCODER.encode(settings), digest),
    )
    next_tick(conn)  # a release in progress must notice (embargo, cap)
    return SettingsView(version=version, digest=digest, at=at, actor=actor, via=via, settings=settings)


def ensure_settings(
    conn: sqlite3.Connection, *, signer: Signer, at: int, initial: Settings | None = None
) -> SettingsView:
    """Version 1 of the settings, recorded as the first audit entry, if there is none yet."""
    view = current_settings(conn)
    if view.version:
        return view
    view = store_settings(conn, initial or Settings(), at=at, actor="system", via="init")
    audit(
        conn,
        signer=signer,
        at=at,
        actor="system",
        action=AuditAction.SETTINGS_INIT,
        payload={"version": 1, "digest": view.digest},
    )
    return view


def change_settings(
    conn: sqlite3.Connection, *, changes: dict[str, Any], actor: Actor, at: int, signer: Signer
) -> SettingsView:
    """An admin's direct change, where the decision rules allow one to act alone."""
    if not actor.admin:
        raise ForbiddenError(
            "only the co-op's admins change settings directly; propose it instead", field="changes"
        )
    current = current_settings(conn)
    classes = changed_classes(changes)
    rule = current.settings.rules.combined(classes)
    if not rule.admin_alone:
        needs = sorted(c.value for c in classes if not current.settings.rules.rule(c).admin_alone)
        raise PolicyError(
            f"changing {', '.join(needs)} needs a vote: open a proposal", field=next(iter(sorted(changes)))
        )
    updated = apply_changes(current.settings, changes)
    if updated == current.settings:
        return current
    view = store_settings(conn, updated, at=at, actor=actor.name, via="admin")
    audit(
        conn,
        signer=signer,
        at=at,
        actor=actor.name,
        action=AuditAction.SETTINGS_CHANGE,
        payload={"version": view.version, "digest": view.digest, "changes": changes, "via": "admin"},
    )
    return view


def setting_class_names() -> list[str]:
    return [c.value for c in SettingClass]


def adopt_moved_config(
    conn: sqlite3.Connection, *, initial: Settings, keys: dict[str, Any], signer: Signer, at: int
) -> bool:
    """Settings that lived in ``node.toml`` (``[defaults]``): version 1 when there is none yet.

    Recorded in the audit log (``config.moved``, with the keys and whether they were applied),
    once: opening the node again before the file was rewritten records nothing new.
    Returns whether they became the settings.
    """
    payload_keys = {key: msgspec.to_builtins(value) for key, value in sorted(keys.items())}
    last = conn.execute(
        "SELECT payload FROM audit_log WHERE action = ? ORDER BY seq DESC LIMIT 1",
        (AuditAction.CONFIG_MOVED.value,),
    ).fetchone()
    if last is not None and msgspec.json.decode(last[0]).get("keys") == payload_keys:
        return False
    applied = current_settings(conn).version == 0
    if applied:
        ensure_settings(conn, signer=signer, at=at, initial=initial)
    audit(
        conn,
        signer=signer,
        at=at,
        actor="system",
        action=AuditAction.CONFIG_MOVED,
        payload={"from": "node.toml", "keys": payload_keys, "applied": applied},
    )
    return applied
