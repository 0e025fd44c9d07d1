"""A long cut says what it is doing: each phase and a count of records written (``coop release``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coop.node.releases import writers

from factories import contribute, make_member, make_node, process


def test_a_cut_reports_its_phases_and_counts_records_as_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 2)
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        for _ in range(5):
            contribute(node, member, scope="public")
        process(node)
        lines: list[str] = []
        summary = node.cut_release(progress=lines.append)
    finally:
        node.close()
    assert summary.records == 5
    assert lines[0] == "writing v1…"
    assert [line for line in lines if line.endswith("records written")] == [
        "2 records written",
        "4 records written",
    ]
    assert "5 records in 1 buckets; checksums and metadata…" in lines
    assert lines[-1] == "statement signed"


def test_a_cut_without_a_listener_is_silent_and_the_same(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        contribute(node, member, scope="public")
        process(node)
        assert node.cut_release().records == 1
    finally:
        node.close()
