"""The one-round benchmark's own parts: the bare Flower App builds as a FAB, and run phases come out
of the stamps a ServerApp writes (no timing is asserted: these are made-up stamps)."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))  # after everything else: bench/ holds plain module names (results, ...)

import bench_flower_round as bench  # noqa: E402
import round_phases as phases_  # noqa: E402


# flwr 1.41's FAB build uses pathspec's deprecated "gitwildmatch" patterns: not ours to fix.
@pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")
def test_bare_flower_app_builds_as_a_fab_with_both_components() -> None:
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(bench.BARE_APP)))
    names = set(fab.namelist())
    assert {"bareapp/server_app.py", "bareapp/client_app.py", "pyproject.toml"} <= names
    config = fab.read("pyproject.toml").decode()
    assert 'serverapp = "bareapp.server_app:app"' in config
    assert 'clientapp = "bareapp.client_app:app"' in config


def test_stamps_from_a_side_file_fill_the_serverapp_phases(tmp_path: Path) -> None:
    side = tmp_path / "stamps.jsonl"
    events = [("main", 103.0), ("pushed", 103.5), ("replies", 107.0), ("written", 107.25)]
    side.write_text("".join(json.dumps({"event": e, "at": t}) + "\n" for e, t in events) + "not json\n")
    stamps = phases_.Stamps(start=100.0, flwr_start=100.0, flwr_end=101.0, serverapp=102.0, done=107.5)
    tail = phases_.SideTail(side)
    tail.read(now=200.0)
    phases_.from_side_events(stamps, tail.events)
    phases = stamps.phases()
    assert phases == pytest.approx(
        {
            "before_submit": 0.0,
            "submit": 1.0,
            "to_serverapp": 1.0,
            "to_main": 1.0,
            "to_push": 0.5,
            "to_pushed": 1.5,
            "round": 3.5,
            "after_round": 0.25,
            "serverapp_total": 5.25,
            "noticed": 0.25,
        }
    )
    assert sum(phases[k] for k, _ in phases_.PHASES) == pytest.approx(stamps.total)


def test_progress_lines_without_a_time_take_the_time_they_were_read(tmp_path: Path) -> None:
    """Our ServerApp's progress file: sent, an answer per co-op, done; a line half written waits."""
    (tmp_path / "report.json.progress").write_text('{"event": "sent", "pushed": 2}\n{"event": "ans')
    tail = phases_.SideTail(tmp_path)  # a folder: the file in it named *progress*
    tail.read(now=10.0)
    with (tmp_path / "report.json.progress").open("a") as out:
        out.write('wer", "answered": 1}\n{"event": "answer", "answered": 2}\n{"event": "done"}\n')
    tail.read(now=12.0)
    stamps = phases_.Stamps(start=8.0, serverapp=9.0, written=12.5, done=13.0)
    phases_.from_side_events(stamps, tail.events)
    assert [item["event"] for _, item in tail.events] == ["sent", "answer", "answer", "done"]
    assert (stamps.main, stamps.pushed, stamps.replies) == (None, 10.0, 12.0)
    phases = stamps.phases()
    assert "to_main" not in phases
    assert phases["to_pushed"] == pytest.approx(1.0)
    assert phases["round"] == pytest.approx(2.0)
    assert phases["serverapp_total"] == pytest.approx(3.5)


def test_stamps_without_a_side_file_measure_only_what_was_seen(tmp_path: Path) -> None:
    stamps = phases_.Stamps(start=0.0, flwr_start=1.0, flwr_end=2.0, serverapp=3.0, written=9.0, done=9.5)
    tail = phases_.SideTail(tmp_path)  # no progress file in it
    tail.read(now=5.0)
    phases_.from_side_events(stamps, tail.events)
    phases = stamps.phases()
    assert set(phases) == {"before_submit", "submit", "to_serverapp", "noticed", "serverapp_total"}
    assert phases["serverapp_total"] == pytest.approx(6.0)
