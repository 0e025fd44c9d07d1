"""The model's metrics, each number checked against a hand computation from ledger rows written in SQL.

The ledger (``channel_records``) and the stage counts are written straight into a migrated
database, so each expectation below follows from the rows in this file alone.  No network:
the HTTP checks go through litestar's in-process ``TestClient``; the clock is a fixed ``NOW``
(the CLI's and the HTTP route's ``Node.now`` is patched to it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coop.node.cli import main
from coop.node.config import ChannelsConfig
from coop.node.http.app import create_app
from coop.node.metrics import MetricsReport, channel_modes, collect, prometheus
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

DAY = 86_400
WEEK = 7 * DAY
TODAY = 20_000 * DAY  # a day's first second
NOW = TODAY + 12 * 3600  # noon

# intake route -> stage -> count (E, C, S, A, T as an integration and the node count them)
STAGES = {
    "web": {"eligible": 10, "captured": 8, "prompt_shown": 4, "consent": 6, "transform_ok": 5},
    "api": {"captured": 4, "consent": 4, "transform_ok": 2},
}
# (channel, seq, route, version, state, opened_at, published_at, withdrawn_at, retracted_at, ref)
ROWS = [
    ("git", 1, "web", 3, "merged", TODAY, TODAY + 3600, None, None, None),  # live today
    ("git", 2, "web", 2, "tombstoned", TODAY - 3 * DAY, TODAY - 3 * DAY, TODAY - DAY, TODAY + 1800, None),
    ("git", 3, "api", 3, "open", TODAY, None, None, None, None),  # a review not merged yet
    ("git", 4, "api", 3, "closed", TODAY, None, None, None, None),  # its review closed
    ("git", 5, "web", 1, "tombstoned", TODAY - 10 * DAY, TODAY - 10 * DAY, TODAY - 2 * DAY, None, None),
    (
        "git",
        6,
        "api",
        1,
        "merged",
        TODAY - 40 * DAY,
        TODAY - 40 * DAY,
        None,
        None,
        None,
    ),  # before every window
    (
        "git",
        7,
        "web",
        3,
        "tombstoned",
        TODAY,
        None,
        TODAY - DAY,
        None,
        None,
    ),  # withdrawn while open: never live
    (
        "git",
        8,
        "web",
        1,
        "tombstoned",
        TODAY - 20 * DAY,
        TODAY - 20 * DAY,
        TODAY - 5 * DAY,
        TODAY - 4 * DAY,
        None,
    ),
    ("site", 1, "web", 3, "merged", TODAY - DAY, TODAY - DAY, None, None, None),
    (
        "site",
        9,
        "cli",
        3,
        "merged",
        TODAY - DAY,
        TODAY - DAY,
        None,
        None,
        None,
    ),  # a route with no stage counts
    ("bluesky", 1, "web", 3, "merged", TODAY, TODAY + 60, None, None, "at://did:plc:x/app.bsky.feed.post/1"),
]


def _seed(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO stage_counts (day, channel, stage, n) VALUES (?, ?, ?, ?)",
        [(TODAY, route, stage, n) for route, counts in STAGES.items() for stage, n in counts.items()],
    )
    conn.executemany("INSERT INTO channel_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    node.store.write(_seed)
    try:
        yield node
    finally:
        node.close()


def _report(node: Node, config: ChannelsConfig | None = None) -> MetricsReport:
    return node.store.read(lambda c: collect(c, now=NOW, config=config or ChannelsConfig()))


def test_model_metrics_git_channel_counts_match_the_hand_computation(node: Node) -> None:
    git = _report(node, ChannelsConfig(git_mode="review")).publish["git"]
    assert git.mode == "review"
    assert git.published == 5  # seqs 1, 2, 5, 6, 8 went live; 3, 4, 7 never did
    assert git.lifecycle == {"open": 1, "merged": 2, "closed": 1, "tombstoned": 4}
    # windows of whole days: 1d = today, 7d = today and 6 days before, 30d = today and 29 before
    assert git.published_window == {"1d": 1, "7d": 2, "30d": 4}  # seq 1 | + 2 | + 5, 8 (6 is 40 days old)
    assert git.throughput == {"1d": 1.0, "7d": round(2 / 7, 4), "30d": round(4 / 30, 4)}
    assert git.retracted == 2  # seqs 2 (today) and 8 (4 days ago)
    assert git.retracted_window == {"1d": 1, "7d": 2, "30d": 2}
    assert git.retraction_pending == 1  # seq 5: withdrawn while live, not retracted yet
    # exposure ends at the withdrawal (or now): seq 1 11 h, 2 two days, 5 eight, 6 forty and a half, 8 fifteen
    seconds = 11 * 3600 + 2 * DAY + 8 * DAY + (40 * DAY + 12 * 3600) + 15 * DAY
    assert git.record_weeks == round(seconds / WEEK, 4) == 9.4226
    assert git.hazard == round(3 / (seconds / WEEK), 4) == 0.3184  # withdrawals of live rows: 2, 5, 8


def test_model_metrics_channels_are_the_configured_ones_and_those_with_rows(node: Node) -> None:
    report = _report(node, ChannelsConfig(git="/srv/git", hf="org/chats"))
    assert {k: m.mode for k, m in report.publish.items()} == {
        "bluesky": "post",
        "git": "commit",
        "hf": "commit",
        "site": "rebuild",
    }
    hf = report.publish["hf"]  # configured, nothing shipped yet
    assert (hf.published, hf.hazard, hf.record_weeks, hf.retraction_pending) == (0, None, 0.0, 0)
    assert hf.lifecycle == {"open": 0, "merged": 0, "closed": 0, "tombstoned": 0}
    assert hf.throughput == {"1d": 0.0, "7d": 0.0, "30d": 0.0}
    site = report.publish["site"]
    assert (site.published, site.published_window, site.throughput["7d"]) == (
        2,
        {"1d": 0, "7d": 2, "30d": 2},
        0.2857,
    )
    assert site.record_weeks == round(2 * (DAY + 12 * 3600) / WEEK, 4)
    assert site.hazard is None  # under one record-week live: no rate yet, not a misleading 0 or 1000s
    assert report.publish["bluesky"].published_window["1d"] == 1


def test_model_metrics_git_mode_review_in_config_reads_as_review() -> None:
    modes = channel_modes(ChannelsConfig(git="/srv/git", git_mode="review", site="/var/www"))
    assert modes == {"git": "review", "site": "rebuild"}
    assert channel_modes(ChannelsConfig()) == {}


def test_model_metrics_route_yields_follow_each_stage_and_channel(node: Node) -> None:
    report = _report(node)
    web, api, cli = report.routes["web"], report.routes["api"], report.routes["cli"]
    assert (web.p_c, web.p_s, web.p_a, web.p_t) == (0.8, 0.5, 0.75, 0.8333)  # 8/10, 4/8, 6/8, 5/6
    assert web.p_k == {"bluesky": 0.2, "git": 0.8, "site": 0.2}  # 1/5, (1, 2, 5, 8)/5, 1/5
    assert (api.p_c, api.p_s, api.p_a, api.p_t) == (
        None,
        None,
        1.0,
        0.5,
    )  # no E, no prompt reported; 4/4, 2/4
    assert api.p_k == {"bluesky": 0.0, "git": 0.5, "site": 0.0}  # seq 6 of 2 transformed
    assert cli.p_k == {"bluesky": None, "git": None, "site": None}  # no T counted: no yield
    assert report.publish["git"].yields == {"api": 0.5, "cli": None, "web": 0.8}


def test_model_metrics_json_carries_routes_and_channels_and_old_reports_still_decode(node: Node) -> None:
    data = json.loads(msgspec.json.encode(_report(node)))
    assert data["routes"]["web"]["p_k"]["git"] == 0.8
    assert data["publish"]["git"]["lifecycle"]["tombstoned"] == 4
    assert data["publish"]["git"]["retracted_window"] == {"1d": 1, "7d": 2, "30d": 2}
    assert data["stages"]["web"]["eligible"] == 10  # the fields from before stay
    old = {"stages": {}, "yields": {}, "published": {}, "states": {}, "releases": 0}
    decoded = msgspec.json.decode(json.dumps(old), type=MetricsReport)
    assert (decoded.routes, decoded.publish) == ({}, {})


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_model_metrics_prometheus_carries_every_number(node: Node) -> None:
    samples = _samples(prometheus(_report(node, ChannelsConfig(git_mode="review"))))

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    assert value("coop_route_yield", route="web", step="p_a") == 0.75
    assert ("coop_route_yield", (("route", "api"), ("step", "p_c"))) not in samples  # no denominator
    assert value("coop_publish_yield", route="web", channel="git") == 0.8
    assert value("coop_channel_records", channel="git", state="tombstoned") == 4
    assert value("coop_channel_published_records", channel="git") == 5
    assert value("coop_channel_throughput", channel="git", window="30d") == round(4 / 30, 4)
    assert value("coop_channel_published_records_window", channel="git", window="7d") == 2
    assert value("coop_channel_retractions_total", channel="git") == 2
    assert value("coop_channel_retractions_window", channel="git", window="1d") == 1
    assert value("coop_channel_retraction_pending", channel="git") == 1
    assert value("coop_channel_retraction_hazard", channel="git") == 0.3184
    assert value("coop_channel_record_weeks", channel="git") == 9.4226


def test_model_metrics_http_json_and_text_carry_the_ledger(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Node, "now", staticmethod(lambda: NOW))
    with TestClient(create_app(node, background=False)) as client:
        data = client.get("/api/v1/metrics").json()
        text = client.get("/metrics").text
    assert data["publish"]["git"]["hazard"] == 0.3184
    assert data["routes"]["api"]["p_t"] == 0.5
    assert 'coop_channel_retraction_pending{channel="git"} 1' in text


def test_model_metrics_cli_text_and_json_show_them_with_the_node_toml_channels(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Node, "now", staticmethod(lambda: NOW))
    root = node.data.root
    toml = (root / "node.toml").read_text(encoding="utf-8")
    toml = toml.replace('git_mode = "commit"', 'git_mode = "review"').replace('hf = ""', 'hf = "org/chats"')
    (root / "node.toml").write_text(toml, encoding="utf-8")
    assert main(["metrics", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "route web: p_c 80%, p_s 50%, p_a 75%, p_t 83%, p_bluesky 20%, p_git 80%, p_hf 0%, p_site 20%" in out
    )
    assert "route api: p_c -," in out
    assert "publish git (review): 5 published; open 1, merged 2, closed 1, tombstoned 4" in out
    assert "  per day: 1d 1, 7d 0.2857, 30d 0.1333 (records: 1d 1, 7d 2, 30d 4)" in out
    assert "  retracted 2 (1d 1, 7d 2, 30d 2), pending 1, hazard 0.3184 per record-week over 9.4226" in out
    assert main(["metrics", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["publish"]["git"]["published"] == 5
    assert data["publish"]["hf"]["mode"] == "commit"  # configured in node.toml, nothing shipped yet
    assert data["routes"]["web"]["p_s"] == 0.5


def test_model_metrics_follow_a_release_published_then_a_withdrawal_retracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through the hf channel and the ledger; the Hub is test_channel_hf's in-memory ``FakeHub``."""
    from test_channel_hf import FakeHub

    from coop.node.channels.publish import publish
    from coop.node.contributions.rights import withdraw_contribution

    clock = [TODAY - 2 * DAY]
    monkeypatch.setattr(Node, "now", staticmethod(lambda: clock[0]))
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node)
        contribute(node, member, license="CC-BY-4.0")
        gone = contribute(node, member, license="CC0-1.0")
        process(node)
        node.cut_release()
        hub = FakeHub()
        published_at = clock[0] = TODAY - 2 * DAY + 3600
        publish(node, "hf", target="coop/chats", api=hub)
        first = _report(node).publish["hf"]
        assert (first.published, first.lifecycle["merged"], first.published_window["7d"]) == (2, 2, 2)
        assert _report(node).routes["api"].p_k["hf"] == 1.0  # both transformed records went out

        withdrawn_at = clock[0] = TODAY - DAY
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=clock[0]))
        pending = _report(node).publish["hf"]
        assert (pending.retraction_pending, pending.retracted, pending.lifecycle["tombstoned"]) == (1, 0, 1)

        node.cut_release()
        clock[0] = TODAY + 60  # the next publish takes the withdrawn record off the Hub
        publish(node, "hf", target="coop/chats", api=hub)
        done = _report(node).publish["hf"]
        assert (done.retraction_pending, done.retracted, done.retracted_window) == (
            0,
            1,
            {"1d": 1, "7d": 1, "30d": 1},
        )
        seconds = (NOW - published_at) + (withdrawn_at - published_at)
        assert done.record_weeks == round(seconds / WEEK, 4)
        assert done.hazard is None  # half a record-week: too little exposure for a rate
        assert _report(node).routes["api"].p_k["hf"] == 1.0  # retraction does not undo P^k
    finally:
        node.close()
