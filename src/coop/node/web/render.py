"""Templates, static files and the small helpers the pages share."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from coop.node.intake.redaction import redact

__all__ = ["STATIC", "TEMPLATES", "highlight", "template_config", "when"]

_HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = _HERE / "templates"
STATIC: Final = _HERE / "static"


def when(epoch: int | None) -> str:
    """A moment as people read it, in UTC (the node's clock)."""
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def highlight(text: str) -> tuple[list[tuple[str, str | None]], dict[str, int]]:
    """``text`` cut into runs, each with the kind of personal data it is (or None): what the redactor replaces."""
    result = redact(text)
    runs: list[tuple[str, str | None]] = []
    last = 0
    for hit in result.hits:
        if hit.start > last:
            runs.append((text[last : hit.start], None))
        runs.append((text[hit.start : hit.end], hit.type.value))
        last = hit.end
    if last < len(text):
        runs.append((text[last:], None))
    return runs, result.counts()


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a missing value is a bug to see, not a blank to ship
        keep_trailing_newline=True,
    )
    env.filters["when"] = when
    env.filters["size"] = size
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))
