"""The phases of one Flower run, for ``bench_flower_round.py``: its landmarks (``Stamps``) and
the JSON lines a ServerApp writes as it goes (``SideTail``), turned into seconds per phase."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["PHASES", "SPANS", "SideTail", "Stamps", "from_side_events"]

# The phases of one run, in order: (key, what it covers).  A phase is measured only when both its
# ends were observed; the two spans below join phases whose middle a ServerApp may not stamp.
PHASES: Final = (
    ("before_submit", "start → `flwr run` started (ours: CLI start-up, request signed)"),
    ("submit", "`flwr run` (build the FAB, submit the run)"),
    ("to_serverapp", "`flwr run` exited → ServerApp process started"),
    ("to_main", "ServerApp process → its main (FAB install, imports)"),
    ("to_push", "main → messages pushed (wait for nodes, open the request)"),
    ("round", "messages pushed → all replies in (the round)"),
    ("after_round", "replies in → result written (report built and signed)"),
    ("noticed", "result written → requester has it (ours: `coop eval request` reads it, writes --out)"),
)
SPANS: Final = (
    ("to_pushed", "serverapp", "pushed", "ServerApp process → messages pushed (the two above)"),
    ("serverapp_total", "serverapp", "written", "ServerApp process → result written (the four above)"),
)


@dataclass
class Stamps:
    """Epoch seconds of the landmarks of one run (None: not observed)."""

    start: float
    flwr_start: float | None = None
    flwr_end: float | None = None
    serverapp: float | None = None
    main: float | None = None
    pushed: float | None = None
    replies: float | None = None
    written: float | None = None
    done: float | None = None
    exited: float | None = None
    clientapps: list[tuple[float, float]] = field(default_factory=list)  # (started, last seen)
    progress: list[dict[str, Any]] = field(default_factory=list)

    def phases(self) -> dict[str, float]:
        marks = [
            self.start,
            self.flwr_start,
            self.flwr_end,
            self.serverapp,
            self.main,
            self.pushed,
            self.replies,
            self.written,
            self.done,
        ]
        out: dict[str, float] = {}
        for (key, _), begin, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
            if begin is not None and end is not None:
                out[key] = max(0.0, end - begin)  # /proc start times are to a clock tick
        for key, first, last, _ in SPANS:
            begin, end = getattr(self, first), getattr(self, last)
            if begin is not None and end is not None:
                out[key] = max(0.0, end - begin)
        return out

    @property
    def total(self) -> float:
        return (self.done or float("nan")) - self.start


_TIME_KEYS: Final = ("at", "time", "ts", "timestamp")


class SideTail:
    """The JSON lines of a side file, each with the time it was written: its own time field when it
    has one, else the time this tail first read it (polled every 20 ms)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = 0
        self.buffer = b""
        self.events: list[tuple[float, dict[str, Any]]] = []

    def _file(self) -> Path | None:
        if self.path is None or not self.path.is_dir():
            return self.path
        found = sorted(p for p in self.path.iterdir() if "progress" in p.name and p.is_file())
        return found[0] if found else None

    def read(self, now: float) -> None:
        path = self._file()
        if path is None:
            return
        try:
            with path.open("rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except OSError:
            return
        self.offset += len(chunk)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                at = next((item[k] for k in _TIME_KEYS if isinstance(item.get(k), int | float)), now)
                self.events.append((float(at), item))


def from_side_events(stamps: Stamps, events: list[tuple[float, dict[str, Any]]]) -> None:
    """Landmarks from a ServerApp's events: the bare app's main/pushed/replies/written, our
    ServerApp's progress (sent, answer per co-op, done = every reply in, error)."""
    events = sorted(events, key=lambda e: e[0])
    stamps.progress = [{**item, "s": round(at - stamps.start, 3)} for at, item in events]

    def when(*names: str) -> list[float]:
        return [at for at, item in events if str(item.get("event", "")).lower() in names]

    main, pushed = when("main"), when("pushed", "sent")
    replies = when("replies", "done") or when("answer")
    written = when("written")
    stamps.main = main[0] if main else None
    stamps.pushed = pushed[0] if pushed else None
    stamps.replies = replies[-1] if replies else None
    if written:
        stamps.written = written[-1]
