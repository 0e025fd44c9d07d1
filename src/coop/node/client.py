"""The member-side HTTP client: what ``coop contribute``, ``mine``, ``correct``, ``vote`` … use.

The one module that calls httpx for the command line: its errors are translated here, once,
into :mod:`coop.node.errors` (an unreachable node is :class:`UnreachableError` after a single
connect attempt; a refusal is the error of its status, with the node's problem text and the
``field`` it names).  A 429 or 503 carrying ``Retry-After`` is waited out and retried, within a
bounded total wait, so a bulk contribution survives the node's rate limit.

Timeouts: one connect attempt of :data:`CONNECT_TIMEOUT` seconds; then a node that accepted
the connection but sends nothing is given up on after :data:`READ_TIMEOUT` seconds, or
:data:`UPLOAD_READ_TIMEOUT` for a call that asks for it (a contribution, which the node parses
and stores before it answers; a download of every contribution).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from coop.node.errors import (
    AuthError,
    ForbiddenError,
    InputError,
    NodeError,
    NotFoundError,
    RateLimitedError,
    StateError,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "UPLOAD_READ_TIMEOUT",
    "NodeClient",
    "RemoteError",
    "UnreachableError",
    "check_node_url",
]

CONNECT_TIMEOUT: Final = 3.0  # one connect attempt (seconds)
READ_TIMEOUT: Final = 15.0  # the longest silence of a node that accepted the connection (seconds)
UPLOAD_READ_TIMEOUT: Final = 60.0  # the same for an upload or download that asks for it
MAX_WAIT: Final = 300.0  # the most one call waits in total for Retry-After (seconds)
_RETRYABLE: Final = (429, 503)
_MAX_RETRY_AFTER: Final = 120.0


class UnreachableError(NodeError):
    """The node at --node did not answer (refused, timed out, no such host)."""


class RemoteError(NodeError):
    """The node answered with a server-side problem (5xx)."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status


def check_node_url(url: str, *, field: str = "--node") -> str:
    """The node's base URL without a trailing slash; refused (an input error) without a scheme."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(
            f"{url!r} is not a node URL: write it with its scheme, e.g. http://127.0.0.1:8000",
            field=field,
        )
    return url.strip().rstrip("/")


def problem_text(response: httpx.Response) -> str:
    """The problem details' detail (or title) and field, or the status line."""
    detail, field = _problem(response)
    return f"{detail} [{field}]" if field else detail


def _problem(response: httpx.Response) -> tuple[str, str | None]:
    """The problem details' detail (or title, or the status line) and the field it names."""
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        field = body.get("field")
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code} {response.reason_phrase}", None
    return str(detail), field if isinstance(field, str) and field else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value.isdigit():
        return None
    return min(float(value), _MAX_RETRY_AFTER)


class NodeClient:
    """Calls to one node with one member's token; a context manager (closes its connections)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_wait: float = MAX_WAIT,
        on_wait: Callable[[float, str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = check_node_url(base_url)
        self._max_wait = max_wait
        self._on_wait = on_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "coop-cli"},
            timeout=_timeout(READ_TIMEOUT),
            transport=transport,
        )

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, *, upload: bool = False, **kwargs: Any) -> httpx.Response:
        """One call: no retry on a connection failure (fail fast), Retry-After honoured on 429/503.

        ``upload`` waits :data:`UPLOAD_READ_TIMEOUT` rather than :data:`READ_TIMEOUT` for the answer.
        """
        read_timeout = UPLOAD_READ_TIMEOUT if upload else READ_TIMEOUT
        waited = 0.0
        while True:
            try:
                response = self._http.request(method, url, timeout=_timeout(read_timeout), **kwargs)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                    raise UnreachableError(
                        f"cannot reach {self.base_url}: no connection within {CONNECT_TIMEOUT:g} s"
                    ) from None
                raise UnreachableError(
                    f"{self.base_url} accepted the connection but did not answer within {read_timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise UnreachableError(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from None
            delay = _retry_after(response) if response.status_code in _RETRYABLE else None
            if delay is None or waited + delay > self._max_wait:
                return _checked(response)
            if self._on_wait is not None:
                self._on_wait(delay, problem_text(response))
            self._sleep(delay)
            waited += delay

    def get_json(self, url: str) -> Any:
        return self.request("GET", url).json()


def _timeout(read: float) -> httpx.Timeout:
    return httpx.Timeout(read, connect=CONNECT_TIMEOUT)


def _checked(response: httpx.Response) -> httpx.Response:
    """The response, or the error of its status carrying the node's text and ``field``."""
    status = response.status_code
    if status < 400:
        return response
    detail, field = _problem(response)
    shown = f"{detail} [{field}]" if field else detail
    text = f"the node refused ({status}): {shown}"
    if status == 429:
        delay = _retry_after(response)
        raise RateLimitedError(text, retry_after=int(delay) if delay is not None else 1, field=field)
    error: type[NodeError] | None = {
        401: AuthError,
        403: ForbiddenError,
        404: NotFoundError,
        409: StateError,
    }.get(status)
    if error is not None:
        raise error(text, field=field)
    if status >= 500:
        raise RemoteError(text, status=status, field=field)
    raise InputError(text, field=field)
