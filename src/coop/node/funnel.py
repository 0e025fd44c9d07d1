"""Daily series for the funnel charts: what each publish channel carried, what left it, and when policy moved.

Everything here is an aggregate the public may see: counts per day and publish channel
(from the channel ledger, ``channel_records``), withdrawals per day (from ``tombstones``)
and policy markers from the audit log, each a fixed short label ("embargo on", "joint
action began") chosen here, never a member, an actor, a record id or a setting's value
beyond on/off.  Pure reads of a connection and ``now``: no clock, no writes.

Days are UTC days (the node's clock), as ``stage_counts`` keeps them: a series of ``days``
days ends with the day holding ``now``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from coop.governance import SettingClass
from coop.node.collective.audit import AuditAction
from coop.node.contributions.repository import Stage

__all__ = [
    "DAY",
    "FunnelStep",
    "Marker",
    "Series",
    "marker_label",
    "published_by_route",
    "route_funnel",
    "series",
    "weakest_step",
]

DAY: Final = 86_400

# What a change to each setting class is called on a chart (a short public label).
_CLASS_LABELS: Final[Mapping[str, str]] = {
    SettingClass.DEFAULTS.value: "defaults changed",
    SettingClass.EMBARGO.value: "embargo changed",
    SettingClass.QUALITY_FREEZE.value: "quality freeze changed",
    SettingClass.VOLUME_CAP.value: "volume cap changed",
    SettingClass.PAYOUT.value: "payout rules changed",
    SettingClass.EVAL_POLICY.value: "evaluation policy changed",
    SettingClass.RULES.value: "decision rules changed",
    SettingClass.ACCESS.value: "access rules changed",
}
_MARKED: Final = (
    AuditAction.SETTINGS_CHANGE.value,
    AuditAction.CONFIG_MOVED.value,
    AuditAction.JOINT_EFFECTIVE.value,
    AuditAction.JOINT_ENDED.value,
)


class Marker(msgspec.Struct, frozen=True):
    """A policy change on a chart: the day it happened (index into the series) and a public label."""

    day: int  # index of the day in Series.dates
    at: int
    label: str


class Series(msgspec.Struct, frozen=True):
    """Per-day counts over ``dates`` (UTC days, oldest first); each list is as long as ``dates``."""

    start: int  # the first day's start (Unix time)
    dates: list[str]  # YYYY-MM-DD
    published: dict[str, list[int]]  # publish channel -> records first live on it that day
    retracted: dict[str, list[int]]  # publish channel -> records that left it that day
    withdrawals: list[int]  # records withdrawn by their members that day
    rectifications: list[int]  # records replaced by a corrected version that day
    markers: list[Marker]


class FunnelStep(msgspec.Struct, frozen=True):
    """One bar of a route's funnel: a stage, its count, and its yield from ``base`` (None: base was 0)."""

    key: str  # E, C, S, A, T or P:<channel>
    label: str
    count: int
    base: str | None = None  # key of the stage the yield divides by
    yield_: float | None = msgspec.field(default=None, name="yield")


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def _per_day(rows: Any, start: int, days: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, day, n in rows:
        counts = out.setdefault(str(key), [0] * days)
        index = (int(day) - start) // DAY
        if 0 <= index < days:
            counts[index] += int(n)
    return out


def marker_label(action: str, payload: Any) -> str | None:
    """The public label of an audited policy change, or None when the entry is not one.

    Only the setting class (and, for the two switches, on or off) is named: a change's
    values (embargo tags, allowlisted keys) and who made it stay in the audit log.
    """
    if action == AuditAction.JOINT_EFFECTIVE:
        return "joint action began"
    if action == AuditAction.JOINT_ENDED:
        return "joint action ended"
    if action == AuditAction.CONFIG_MOVED:
        return "defaults changed"
    if action != AuditAction.SETTINGS_CHANGE:
        return None
    changes = payload.get("changes") if isinstance(payload, dict) else None
    if not isinstance(changes, dict) or not changes:
        return "settings changed"
    heads = sorted({str(path).split(".", 1)[0] for path in changes})
    if heads == [SettingClass.QUALITY_FREEZE.value] and len(changes) == 1:
        value = next(iter(changes.values()))
        if isinstance(value, bool):
            return f"quality freeze {'on' if value else 'off'}"
    if heads == [SettingClass.EMBARGO.value]:
        on = changes.get("embargo.on")
        whole = changes.get("embargo")
        if isinstance(whole, dict) and isinstance(whole.get("on"), bool):
            on = whole["on"]
        if isinstance(on, bool):
            return f"embargo {'on' if on else 'off'}"
    labels = [_CLASS_LABELS.get(head, "settings changed") for head in heads]
    return "; ".join(dict.fromkeys(labels))


def _markers(conn: sqlite3.Connection, start: int, end: int) -> list[Marker]:
    placeholders = ", ".join("?" for _ in _MARKED)
    rows = conn.execute(
        f"SELECT at, action, payload FROM audit_log WHERE action IN ({placeholders})"
        " AND at >= ? AND at < ? ORDER BY seq",
        (*_MARKED, start, end),
    )
    markers: list[Marker] = []
    seen: set[tuple[int, str]] = set()
    for at, action, payload in rows:
        try:
            decoded = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            decoded = None
        label = marker_label(str(action), decoded)
        if label is None:
            continue
        day = (int(at) - start) // DAY
        if (day, label) in seen:  # two joint actions binding on one day read as one marker
            continue
        seen.add((day, label))
        markers.append(Marker(day=day, at=int(at), label=label))
    return markers


def series(conn: sqlite3.Connection, *, now: int, days: int = 90) -> Series:
    """The last ``days`` UTC days up to and including today's, for the time charts."""
    days = max(1, days)
    today = now - now % DAY
    start = today - (days - 1) * DAY
    end = today + DAY
    dates = [datetime.fromtimestamp(start + i * DAY, UTC).strftime("%Y-%m-%d") for i in range(days)]
    published: dict[str, list[int]] = {}
    retracted: dict[str, list[int]] = {}
    if _table_exists(conn, "channel_records"):
        channels = [str(c) for (c,) in conn.execute("SELECT DISTINCT channel FROM channel_records")]
        published = _per_day(
            conn.execute(
                "SELECT channel, published_at - published_at % 86400, count(*) FROM channel_records"
                " WHERE published_at >= ? AND published_at < ? GROUP BY 1, 2",
                (start, end),
            ),
            start,
            days,
        )
        retracted = _per_day(
            conn.execute(
                "SELECT channel, retracted_at - retracted_at % 86400, count(*) FROM channel_records"
                " WHERE retracted_at >= ? AND retracted_at < ? GROUP BY 1, 2",
                (start, end),
            ),
            start,
            days,
        )
        for channel in channels:  # a channel quiet in the window still draws its flat line
            published.setdefault(channel, [0] * days)
            retracted.setdefault(channel, [0] * days)
    gone = _per_day(
        conn.execute(
            "SELECT reason, at - at % 86400, count(*) FROM tombstones WHERE at >= ? AND at < ? GROUP BY 1, 2",
            (start, end),
        ),
        start,
        days,
    )
    return Series(
        start=start,
        dates=dates,
        published=dict(sorted(published.items())),
        retracted=dict(sorted(retracted.items())),
        withdrawals=gone.get("withdrawn", [0] * days),
        rectifications=gone.get("rectified", [0] * days),
        markers=_markers(conn, start, end),
    )


def published_by_route(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Intake route -> publish channel -> records ever live on it (P^k_r), from the ledger."""
    if not _table_exists(conn, "channel_records"):
        return {}
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        "SELECT route, channel, count(*) FROM channel_records WHERE published_at IS NOT NULL"
        " GROUP BY route, channel ORDER BY route, channel"
    )
    for route, channel, n in rows:
        out.setdefault(str(route), {})[str(channel)] = int(n)
    return out


def _ratio(count: int, base: int) -> float | None:
    return round(count / base, 4) if base else None


def route_funnel(
    stages: Mapping[str, int], published: Mapping[str, int], channels: list[str] | None = None
) -> list[FunnelStep]:
    """The bars of one intake route: E, C, S, A, T and P^k per publish channel, with their yields.

    The yields are the model's (design §2): p_c = C/E, p_s = S/C, p_a = A/C (consented of
    captured: S counts prompts, not people), p_t = T/A and p_k = P^k/T.  A route that reported
    no prompt (S = 0) has no p_s here.
    """
    e = stages.get(Stage.ELIGIBLE.value, 0)
    c = stages.get(Stage.CAPTURED.value, 0)
    s = stages.get(Stage.PROMPT_SHOWN.value, 0)
    a = stages.get(Stage.CONSENT.value, 0)
    t = stages.get(Stage.TRANSFORM_OK.value, 0)
    steps = [
        FunnelStep("E", "eligible", e),
        FunnelStep("C", "captured", c, "E", _ratio(c, e)),
        # No prompt reported on this route (members share unprompted): S is not a step it took,
        # so it has no yield and is never the "weakest" one.
        FunnelStep("S", "share prompt shown", s, "C", _ratio(s, c) if s else None),
        FunnelStep("A", "consented", a, "C", _ratio(a, c)),
        FunnelStep("T", "processed", t, "A", _ratio(t, a)),
    ]
    for channel in sorted(set(channels or ()) | set(published)):
        p = published.get(channel, 0)
        steps.append(FunnelStep(f"P:{channel}", f"published on {channel}", p, "T", _ratio(p, t)))
    return steps


def weakest_step(steps: list[FunnelStep]) -> str | None:
    """The key of the step with the lowest yield among those with a denominator above 0."""
    scored = [(s.yield_, i, s.key) for i, s in enumerate(steps) if s.yield_ is not None]
    if not scored:
        return None
    return min(scored)[2]
