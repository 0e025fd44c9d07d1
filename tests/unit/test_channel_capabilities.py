"""Issue 12: ``coop publish`` reads what a channel declares (its capabilities), never its name or class."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_channel_hf import FakeHub  # the Hub's in-memory stand-in (the one mock)

from coop.node.channels import publish as publish_module
from coop.node.channels.base import Capabilities, ChannelError, ReleaseFolder
from coop.node.channels.publish import CHANNELS, Channel, ChannelSetup, publish, publisher_for
from coop.node.runtime import Node
from coop.node.web.static_site import site_builder

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path)
    try:
        member, _ = make_member(n)
        for _ in range(3):
            contribute(n, member)
            process(n)
            n.cut_release()
        yield n
    finally:
        n.close()


class Recorder:
    """A channel that keeps what it was sent; its capabilities are the test's to choose."""

    name = "recorder"

    def __init__(self, target: str, capabilities: Capabilities) -> None:
        self.target = target
        self.capabilities = capabilities
        self.sent: list[tuple[str, bytes]] = []
        self.staged: list[str] = []

    def published(self) -> list[str]:
        return [name for name, _ in self.sent]

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        self.sent.append((release.name, statement))
        return f"ref-{release.name}"

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        self.staged.append(release.name)
        return f"plan-{release.name}"


def _install(monkeypatch: pytest.MonkeyPatch, capabilities: Capabilities) -> list[Recorder]:
    """Register a ``recorder`` channel with these capabilities; the publishers it makes."""
    made: list[Recorder] = []

    def make(target: str, setup: ChannelSetup) -> Recorder:
        made.append(Recorder(target, capabilities))
        return made[-1]

    monkeypatch.setitem(publish_module.CHANNELS, "recorder", Channel(configured=lambda c: "", make=make))  # type: ignore[index]
    return made


def test_every_channel_declares_its_capabilities(node: Node, tmp_path: Path) -> None:
    built = {
        name: publisher_for(node, name, target, api=FakeHub(), build_site=site_builder(node))  # type: ignore[arg-type]
        for name, target in (
            ("git", str(tmp_path / "bare.git")),
            ("hf", "coop/chats"),
            ("site", str(tmp_path / "s")),
            ("bluesky", "coop.example.org"),
        )
    }
    assert set(built) == set(CHANNELS)
    assert built["git"].capabilities == Capabilities()
    assert built["hf"].capabilities == Capabilities(latest_only=True, stages_plan=True)
    assert built["site"].capabilities == Capabilities(rebuilt_whole=True)
    assert built["bluesky"].capabilities == Capabilities(posts=True)  # it keeps its own ledger rows


def test_a_channel_rebuilt_whole_gets_the_newest_release_once(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _install(monkeypatch, Capabilities(rebuilt_whole=True))
    report = publish(node, "recorder", target="anywhere")
    assert [name for name, _ in sent[0].sent] == ["v3"]
    assert [p.release for p in report.shipped] == ["v3"]


def test_a_channel_that_keeps_every_release_gets_them_all_with_their_stored_statements(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _install(monkeypatch, Capabilities())
    publish(node, "recorder", target="anywhere")
    names = [name for name, _ in sent[0].sent]
    assert names == ["v1", "v2", "v3"]
    for name, statement in sent[0].sent:
        assert statement == (node.data.releases_path / name / "release.dsse.json").read_bytes()


def test_a_dry_run_stages_only_where_the_channel_says_it_can(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    for can, staged, plan in (
        (Capabilities(stages_plan=True), ["v3"], "plan-v3"),
        (Capabilities(), [], None),
    ):
        sent = _install(monkeypatch, can)
        report = publish(node, "recorder", target="anywhere", dry_run=True)
        assert report.planned == ["v1", "v2", "v3"] and report.shipped == []
        assert sent[0].staged == staged and report.plan == plan and sent[0].sent == []


def test_an_unknown_channel_is_refused_naming_the_known_ones(node: Node) -> None:
    with pytest.raises(ChannelError, match="choose one of git, hf, site") as caught:
        publish(node, "ftp", target="x")
    assert caught.value.field == "channel"
