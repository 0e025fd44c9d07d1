"""Charts as SVG markup: pure functions of numbers and labels, no JavaScript, no inline styles.

Each chart is a ``<figure>``: an ``<svg role="img">`` named by its ``<title>`` and described
by its ``<desc>``, followed by a ``<table>`` of the same numbers, so the page reads without
JavaScript, without images and with a screen reader.  Colours come from classes in
``static/app.css`` (the CSP allows no ``<style>`` element); what colour says is also said
another way: the weakest funnel step carries a text mark, and each line of a time chart its
own dash pattern and a legend entry.  Every label is escaped: a chart never carries markup
it was given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

from markupsafe import Markup

from coop.node.funnel import FunnelStep, Marker

__all__ = ["funnel_chart", "time_chart"]

_WIDTH: Final = 640
_SERIES_STYLES: Final = 6  # .chart-line-0 .. -5 in app.css, each a colour and a dash pattern
_ID_UNSAFE: Final = re.compile(r"[^a-z0-9-]+")
# A text's width is estimated, not measured (no font metrics here): 12 px text in the bold
# the weakest step is drawn in averages under 7.5 px a character.
CHAR_W: Final = 7.5
_LABEL_CHARS: Final = 36  # a longer bar label is cut with "…" (the table keeps it whole)
_MIN_BAR_W: Final = 150


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _id(text: str) -> str:
    return _ID_UNSAFE.sub("-", text.lower()).strip("-") or "chart"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%".replace(".0%", "%")


def _figure(svg: list[str], table: list[str]) -> Markup:
    # Every label and value in these pieces went through _e (or is a number we formatted).
    return Markup(f'<figure class="chart-figure">{"".join(svg)}{"".join(table)}</figure>')  # noqa: S704


def _text_w(text: str) -> int:
    return math.ceil(len(text) * CHAR_W)


def _clip(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _bar_value(step: FunnelStep, *, marked: bool) -> str:
    value = f"{step.count}"
    if step.base is not None:
        value += f" ({_percent(step.yield_)} of {step.base})"
    return value + (" ▼ weakest" if marked else "")


def _open(chart_id: str, title: str, desc: str, height: int, *, width: int = _WIDTH) -> str:
    return (
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-title" aria-describedby="{chart_id}-desc"'
        f' viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet"'
        ' xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{_e(title)}</title><desc id="{chart_id}-desc">{_e(desc)}</desc>'
    )


def funnel_chart(
    steps: Sequence[FunnelStep], *, weakest: str | None, chart_id: str, title: str, desc: str = ""
) -> Markup:
    """One horizontal bar per stage (E, C, S, A, T, P^k) with its count and yield; the weakest marked."""
    cid = _id(chart_id)
    row, top, gap = 30, 10, 10
    labels = [_clip(f"{s.key} {s.label}") for s in steps]
    values = [_bar_value(s, marked=s.key == weakest) for s in steps]
    # The label column is as wide as the longest label, the numbers after the longest bar fit,
    # and the bars take what is left (never under _MIN_BAR_W: the chart widens instead).
    label_w = _text_w(max(labels, key=len, default="")) + gap
    value_w = _text_w(max(values, key=len, default="")) + gap
    width = max(_WIDTH, label_w + _MIN_BAR_W + value_w)
    bar_w = width - label_w - value_w
    height = top * 2 + row * max(1, len(steps))
    peak = max((s.count for s in steps), default=0) or 1
    weak = next((s for s in steps if s.key == weakest), None)
    summary = desc or (
        f"{len(steps)} stages; weakest step: {weak.key} {weak.label}, {_percent(weak.yield_)} of {weak.base}."
        if weak is not None
        else f"{len(steps)} stages; no yield to compare yet."
    )
    parts = [_open(cid, title, summary, height, width=width)]
    if not steps:
        parts.append(f'<text class="chart-empty" x="10" y="{top + 18}">No data yet.</text>')
    for index, step in enumerate(steps):
        y = top + index * row
        bar = max(round(step.count / peak * bar_w, 1), 1)
        marked = step.key == weakest
        parts.append(
            f'<g class="chart-step{" chart-weakest" if marked else ""}">'
            f'<text class="chart-label" x="0" y="{y + 19}">{_e(labels[index])}</text>'
            f'<rect class="chart-bar" x="{label_w}" y="{y + 4}" width="{bar}" height="{row - 8}"/>'
            f'<text class="chart-value" x="{label_w + bar + 6}" y="{y + 19}">{_e(values[index])}</text></g>'
        )
    parts.append("</svg>")
    table = [
        f'<table class="chart-data" id="{cid}-table"><caption>{_e(title)}: the numbers</caption>',
        '<thead><tr><th scope="col">Stage</th><th scope="col">Count</th>'
        '<th scope="col">Yield</th><th scope="col">Weakest</th></tr></thead><tbody>',
    ]
    for step in steps:
        yielded = "" if step.base is None else f"{_percent(step.yield_)} of {_e(step.base)}"
        mark = "<strong>weakest step</strong>" if step.key == weakest else ""
        row_class = ' class="chart-weakest"' if step.key == weakest else ""
        table.append(
            f"<tr{row_class}>"
            f'<th scope="row">{_e(step.key)} {_e(step.label)}</th>'
            f"<td>{step.count}</td><td>{yielded}</td><td>{mark}</td></tr>"
        )
    if not steps:
        table.append('<tr><td colspan="4">No data yet.</td></tr>')
    table.append("</tbody></table>")
    return _figure(parts, table)


def time_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    dates: Sequence[str],
    lines: Mapping[str, Sequence[int]],
    markers: Sequence[Marker] = (),
    unit: str = "records",
) -> Markup:
    """One line per series over ``dates``, policy changes as labelled vertical lines, then a table.

    The table lists the days with any count or marker (an idle day is left out and the caption
    says so), so 90 days of a quiet channel do not read as 90 rows of zeros.
    """
    cid = _id(chart_id)
    left, right, top, bottom = 44, 12, 44, 34
    legend_row = 18
    names = list(lines)
    plot_h = 140
    height = top + plot_h + bottom + legend_row * max(1, len(names))
    plot_w = _WIDTH - left - right
    n = len(dates)
    peak = max((max(v, default=0) for v in lines.values()), default=0)
    scale = peak or 1

    def x(i: int) -> float:
        return round(left + (plot_w / 2 if n <= 1 else i * plot_w / (n - 1)), 1)

    def y(v: int) -> float:
        return round(top + plot_h - v / scale * plot_h, 1)

    totals = ", ".join(f"{name}: {sum(values)}" for name, values in lines.items()) or "no series"
    span = f"{dates[0]} to {dates[-1]}" if dates else "no days"
    summary = f"{desc} {span}; totals {totals}; {len(markers)} policy change(s) marked."
    parts = [_open(cid, title, summary.strip(), height)]
    parts.append(
        f'<line class="chart-axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
        f'<line class="chart-axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>'
        f'<text class="chart-tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>'
        f'<text class="chart-tick" x="{left - 6}" y="{top + 10}" text-anchor="end">{peak}</text>'
    )
    if dates:
        parts.append(f'<text class="chart-tick" x="{left}" y="{top + plot_h + 18}">{_e(dates[0])}</text>')
        if n > 1:
            parts.append(
                f'<text class="chart-tick" x="{left + plot_w}" y="{top + plot_h + 18}"'
                f' text-anchor="end">{_e(dates[-1])}</text>'
            )
    for index, marker in enumerate(markers):
        if not 0 <= marker.day < max(n, 1):
            continue
        mx = x(marker.day)
        ly = top - 6 - (index % 3) * 12  # staggered so labels of close days do not sit on each other
        parts.append(
            f'<g class="chart-marker"><line x1="{mx}" y1="{ly + 2}" x2="{mx}" y2="{top + plot_h}"/>'
            f'<text x="{mx + 3}" y="{ly}">{_e(marker.label)}</text></g>'
        )
    for index, name in enumerate(names):
        values = list(lines[name])[:n]
        style = index % _SERIES_STYLES
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values))
        if len(values) == 1:
            parts.append(f'<circle class="chart-line-{style}" cx="{x(0)}" cy="{y(values[0])}" r="3"/>')
        elif values:
            parts.append(f'<polyline class="chart-line chart-line-{style}" points="{points}"/>')
        ly = top + plot_h + bottom + index * legend_row
        parts.append(
            f'<line class="chart-line chart-line-{style}" x1="{left}" y1="{ly - 4}" x2="{left + 28}" y2="{ly - 4}"/>'
            f'<text class="chart-legend" x="{left + 34}" y="{ly}">{_e(name)} ({sum(values)} {_e(unit)})</text>'
        )
    if not names:
        parts.append(f'<text class="chart-empty" x="{left + 10}" y="{top + plot_h / 2}">No data yet.</text>')
    parts.append("</svg>")

    by_day: dict[int, list[str]] = {}
    for marker in markers:
        by_day.setdefault(marker.day, []).append(marker.label)
    table = [
        f'<table class="chart-data" id="{cid}-table"><caption>{_e(title)} ({_e(unit)} per day;'
        " days with nothing are left out)</caption>",
        '<thead><tr><th scope="col">Day</th>',
        *(f'<th scope="col">{_e(name)}</th>' for name in names),
        '<th scope="col">Policy change</th></tr></thead><tbody>',
    ]
    shown = 0
    for i, date in enumerate(dates):
        counts = [list(lines[name])[i] if i < len(lines[name]) else 0 for name in names]
        if not any(counts) and i not in by_day:
            continue
        shown += 1
        cells = "".join(f"<td>{v}</td>" for v in counts)
        table.append(
            f'<tr><th scope="row">{_e(date)}</th>{cells}<td>{_e("; ".join(by_day.get(i, [])))}</td></tr>'
        )
    if not shown:
        table.append(f'<tr><td colspan="{len(names) + 2}">Nothing in these days.</td></tr>')
    table.append("</tbody></table>")
    return _figure(parts, table)
