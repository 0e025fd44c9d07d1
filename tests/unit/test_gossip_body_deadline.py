"""Issue 11 (peer review finding 7): a signed peer cannot hold a request body open for ever.

A push announcing 100 bytes and sending one byte now and then was read with no deadline; the
body is now refused when it has not all arrived within the deadline, as a 408 problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coop.node.errors import RequestTimeoutError
from coop.node.http.federation import _capped_body
from coop.node.http.problems import classify


class _DrippingRequest:
    """A request whose body comes one byte at a time, far apart (bounded: 100 bytes)."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.sent = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for _ in range(100):
            self.sent += 1
            yield b"x"
            await asyncio.sleep(self.pause)


class _QuickRequest:
    async def stream(self) -> AsyncIterator[bytes]:
        yield b'{"manifests":'
        yield b"[]}"


def _read(request: object, *, within: float) -> bytes:
    fake: Any = request
    return asyncio.run(_capped_body(fake, 1024, "push", within=within))


def test_capped_body_dripping_peer_is_refused_at_the_deadline_with_408() -> None:
    request = _DrippingRequest(pause=5.0)
    with pytest.raises(RequestTimeoutError) as caught:
        _read(request, within=0.3)
    assert caught.value.field == "body"
    assert "within 0.3 s" in caught.value.message
    assert request.sent < 100  # cut off, not read to the end
    assert classify(caught.value)[0] == 408


def test_capped_body_whole_body_in_time_is_read() -> None:
    assert _read(_QuickRequest(), within=5.0) == b'{"manifests":[]}'
