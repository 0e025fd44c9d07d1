"""Review mode's settings (``channels.git_mode``, ``channels.review_check_s``) and its scheduler job.

The job runs against a fake node and clock (no git, no network): each wait the loop asks for
is recorded, and the refresh it calls is a stand-in that fails or settles in turn.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coop.node.channels.review import Settled
from coop.node.config import ChannelsConfig, Config, NodeSection, load_config
from coop.node.errors import StorageError
from coop.node.scheduler import Job, Scheduler


class _StopError(Exception):
    """Ends the loop under test after a bounded number of waits."""


def _write(tmp_path: Path, channels: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "x"\n\n[channels]\n{channels}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('git_mode = "pull-request"', "channels.git_mode"),
        ("review_check_s = 0", "channels.review_check_s"),
        ("review_check_s = -5.0", "channels.review_check_s"),
    ],
)
def test_channels_config_bad_review_setting_is_refused_naming_the_field(
    tmp_path: Path, line: str, field: str
) -> None:
    with pytest.raises(StorageError, match=field):
        load_config(_write(tmp_path, line))


def test_channels_config_review_mode_reads_and_defaults_to_commit(tmp_path: Path) -> None:
    assert ChannelsConfig().git_mode == "commit"
    assert ChannelsConfig().review_check_s == 300.0
    config = load_config(_write(tmp_path, 'git_mode = "review"\nreview_check_s = 30'))
    assert config.channels.git_mode == "review" and config.channels.review_check_s == 30.0


def _node(**channels: Any) -> Any:
    return SimpleNamespace(config=Config(node=NodeSection(name="fake"), channels=ChannelsConfig(**channels)))


@pytest.mark.parametrize(
    ("channels", "tracked"),
    [
        ({}, False),
        ({"git": "/srv/data.git"}, False),  # commit mode: nothing to check
        ({"git_mode": "review"}, False),  # no target: nothing to check
        ({"git": "/srv/data.git", "git_mode": "review"}, True),
    ],
)
def test_scheduler_review_job_tracked_only_with_a_git_target_in_review_mode(
    channels: dict[str, str], tracked: bool
) -> None:
    scheduler = Scheduler(_node(**channels), clock=lambda: 0.0)
    scheduler.track()
    assert (Job.REVIEWS in {h.job for h in scheduler.health()}) is tracked


def test_scheduler_review_loop_refreshes_each_interval_and_backs_off_on_failure() -> None:
    calls: list[str] = []
    steps: list[Exception | None] = [StorageError("target unreachable"), None, None]

    def refresh(channel: str) -> list[Settled]:  # the node's refresh_reviews, faked
        calls.append(channel)
        step = steps.pop(0) if steps else None
        if step is not None:
            raise step
        return [Settled(release="v1", state="merged", ref="abc")]

    now = [1000.0]
    waits: list[float] = []

    async def wait(delay: float, wake: asyncio.Event | None) -> None:
        waits.append(delay)
        now[0] += delay
        if len(waits) >= 3:
            raise _StopError

    node = _node(git="/srv/data.git", git_mode="review", review_check_s=45.0)
    node.refresh_reviews = refresh
    scheduler = Scheduler(node, clock=lambda: now[0], wait=wait)
    scheduler.track()
    with pytest.raises(_StopError):
        asyncio.run(scheduler._review_loop())
    assert calls == ["git", "git", "git"]
    assert waits == [60.0, 45.0, 45.0]  # one failure: the back-off (capped at a minute); then the interval
    reviews = {h.job: h for h in scheduler.health()}[Job.REVIEWS]
    assert reviews.failures == 1 and reviews.consecutive_failures == 0
