"""How the Bluesky channel reads a PDS's refusals: hostile rate-limit headers, and a service that
stops answering while posts are being deleted.  No network: atproto's own exception types."""

from __future__ import annotations

from typing import Any

from atproto_client import exceptions

from coop.node.channels.base import ChannelError
from coop.node.channels.bluesky import BlueskyPublisher
from coop.node.channels.bluesky_request import translated
from coop.node.channels.previews import Hidden


class _HostileLimit(exceptions.RateLimitExceededError):
    """A 429 whose ratelimit-reset header is a year no calendar holds."""

    def __init__(self, retry_after: float | None, reset_fails: bool) -> None:
        super().__init__(None)
        self._wait = retry_after
        self._fails = reset_fails

    @property
    def retry_after(self) -> float | None:  # type: ignore[override]
        return self._wait

    @property
    def reset_at(self) -> Any:  # type: ignore[override]
        if self._fails:
            raise ValueError("year 3170843 is out of range")
        return None


def test_bluesky_a_hostile_reset_header_is_a_one_line_error_not_a_traceback() -> None:
    error = translated(_HostileLimit(None, reset_fails=True), service="http://pds")
    assert isinstance(error, ChannelError)
    assert "rate limiting" in error.message and "\n" not in error.message


def test_bluesky_an_absurd_retry_after_reads_over_a_day() -> None:
    error = translated(_HostileLimit(1e300, reset_fails=False), service="http://pds")
    assert "over a day" in error.message and len(error.message) < 200


class _DownAccount:
    """An account whose PDS stopped answering: every delete is a network error."""

    def __init__(self) -> None:
        self.calls = 0

    def delete(self, uri: str) -> None:
        self.calls += 1
        try:
            raise exceptions.NetworkError(None)
        except exceptions.NetworkError as exc:
            raise ChannelError("cannot reach http://pds: NetworkError", field="x") from exc


class _NoNode:
    store: Any = None

    def now(self) -> int:
        raise AssertionError("nothing was deleted: nothing to mark")

    def index_catalog(self) -> int:
        return 0


def test_bluesky_deletions_stop_when_the_service_does_not_answer() -> None:
    """Hundreds of posts to delete after an embargo, and the PDS is down (or asks to wait): one
    call, then the rest wait for the next publish -- not one call per post against it."""
    publisher = BlueskyPublisher(
        "coop.example.org",
        node=_NoNode(),
        coop="Co-op",
        base_url="http://127.0.0.1:1",
        hidden=Hidden(),
        password=lambda: "unused",
    )
    account = _DownAccount()
    gone = [(seq, f"at://did:plc:x/app.bsky.feed.post/{seq}") for seq in range(1, 301)]
    assert publisher._delete(account, gone) == []  # type: ignore[arg-type]
    assert account.calls == 1
    assert len(publisher.failed) == 300  # every one retried at the next publish
