"""The HTTP side of the Bluesky channel's ``atproto`` client: no redirects, bounded answers.

``atproto``'s own :class:`~atproto_client.request.Request` builds an ``httpx.Client`` with
``follow_redirects=True`` and reads every answer whole.  A PDS (or anything posing as one at
``channels.bluesky_service``) could then redirect ``createSession`` -- the app password in its
body -- to another host, or send an endless error body.  :class:`BoundedRequest` is the same
request class with neither: a 3xx answer is an error (:func:`redirect_of` tells the channel so),
an error body is read to its first :data:`MAX_ERROR_BODY` bytes and a success to
:data:`MAX_BODY`, and one call's body must arrive within :data:`DEADLINE_S` of its start (the
wait for the headers is bounded by httpx's per-operation timeouts; httpx has no overall one).

Imported only when posting (``atproto`` takes most of a second to load).
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

import httpx
from atproto_client import exceptions
from atproto_client.request import Request, RequestBase, _handle_request_errors, _handle_response

from coop.node.channels.base import ChannelError
from coop.node.channels.bluesky import PASSWORD_ENV

__all__ = [
    "DEADLINE_S",
    "MAX_BODY",
    "MAX_ERROR_BODY",
    "BoundedRequest",
    "library_errors",
    "redirect_of",
    "stops_the_run",
    "translated",
]

MAX_ERROR_BODY: Final = 4096  # an XRPC error is a short JSON object: the rest is never read
MAX_BODY: Final = 1 << 20  # the channel's answers (a session, a record's URI) are small
DEADLINE_S: Final = 60.0
# Headers describing the body as sent: the bounded copy is already decoded and cut.
_BODY_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class BoundedRequest(Request):  # type: ignore[misc]  # atproto is untyped to mypy here
    """``atproto``'s request class without redirects, with bounded bodies and a deadline."""

    def __init__(self, **kwargs: Any) -> None:
        RequestBase.__init__(self)  # not Request.__init__: it makes a redirect-following client
        self._client_kwargs = kwargs
        self._client = httpx.Client(follow_redirects=False, **kwargs)

    def _send_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = self.get_headers(kwargs.pop("headers", None))
        try:
            request = self._client.build_request(method=method, url=url, headers=headers, **kwargs)
            deadline = time.monotonic() + DEADLINE_S
            response = self._client.send(request, stream=True)
            try:
                ok = 200 <= response.status_code <= 299
                body = _read(response, MAX_BODY if ok else MAX_ERROR_BODY, deadline=deadline, whole=ok)
            finally:
                response.close()
            kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
            bounded = httpx.Response(response.status_code, headers=kept, content=body, request=request)
            checked: httpx.Response = _handle_response(bounded)
            return checked
        except Exception as e:  # atproto's own translation, then re-raised
            _handle_request_errors(e)
            raise


def _read(response: httpx.Response, limit: int, *, deadline: float, whole: bool) -> bytes:
    """At most ``limit`` bytes of the body (decoded), by ``deadline``; ``whole``: a longer
    body is an error rather than cut."""
    body = bytearray()
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"answer not read within {DEADLINE_S:.0f} s", request=response.request)
        body += chunk
        if len(body) > limit:
            if whole:
                raise ValueError(f"answer longer than {limit} bytes")
            return bytes(body[:limit])
    return bytes(body)


def redirect_of(exc: Exception) -> tuple[int, str] | None:
    """(status, Location) when ``exc`` is an answer redirecting elsewhere; else None."""
    if not isinstance(exc, exceptions.RequestErrorBase) or exc.response is None:
        return None
    status = exc.response.status_code
    if not 300 <= status <= 399:
        return None
    location = str(exc.response.headers.get("location", ""))
    return status, " ".join(location.split())[:200]


def library_errors() -> tuple[type[Exception], ...]:
    """What ``atproto`` raises: its own errors, and a ValueError (pydantic's) for an answer
    that does not fit its models."""
    import httpx
    from atproto_client.exceptions import AtProtocolError

    # httpx errors atproto does not wrap (a URL it cannot use: no scheme, an unknown one).
    return (AtProtocolError, ValueError, httpx.HTTPError, httpx.InvalidURL)


def translated(exc: Exception, *, service: str, login: bool = False) -> ChannelError:
    """An ``atproto`` error as a one-line :class:`ChannelError` naming what to look at."""
    from atproto_client import exceptions

    redirect = redirect_of(exc)
    if redirect is not None:  # never followed: the app password stays with the service named
        status, location = redirect
        return ChannelError(
            f"{service} answered {status}, a redirect to {location or 'elsewhere'}: not followed;"
            " set channels.bluesky_service to the PDS's own URL",
            field="channels.bluesky_service",
        )
    if isinstance(exc, exceptions.UnauthorizedError) or (
        login and isinstance(exc, exceptions.BadRequestError)
    ):
        return ChannelError(
            f"{service} refused the Bluesky handle or app password: check channels.bluesky and {PASSWORD_ENV}",
            field=PASSWORD_ENV,
        )
    if isinstance(exc, exceptions.RateLimitExceededError):
        wait = _retry_after(exc)
        when = f"the PDS asks to wait {wait}" if wait else "publish again later"
        return ChannelError(f"{service} is rate limiting this account: {when}", field="channels.bluesky")
    if isinstance(exc, exceptions.NetworkError) or not isinstance(
        exc, (exceptions.AtProtocolError, ValueError)
    ):
        return ChannelError(f"cannot reach {service}: {_reason(exc)}", field="channels.bluesky_service")
    detail = " ".join(str(exc).split())[:200]
    return ChannelError(
        f"{service} refused: {detail or type(exc).__name__}", field="channels.bluesky_service"
    )


def _retry_after(exc: Exception) -> str | None:
    """How long a 429 asks to wait (``30 s``, ``2 min``): its Retry-After (seconds or an HTTP
    date, read by ``atproto``), else the PDS's ``ratelimit-reset`` as a UTC time; None when it
    says neither."""
    from atproto_client import exceptions

    if not isinstance(exc, exceptions.RateLimitExceededError):
        return None
    try:  # both read the PDS's headers: a hostile value must not end the run with a traceback
        wait = exc.retry_after
        reset = exc.reset_at if wait is None else None
    except (ValueError, OverflowError, OSError):
        return None
    if wait is not None:
        seconds = math.ceil(wait)
        if seconds > 86_400:
            return "over a day"
        return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"
    if reset is not None:
        return f"until {reset:%Y-%m-%d %H:%M:%S} UTC"
    return None


def stops_the_run(exc: BaseException) -> bool:
    """A refusal about the service, not about one post: rate limited, unreachable, or failing
    (5xx).  The remaining deletions wait for the next publish instead of pressing on."""
    from atproto_client import exceptions

    cause = exc.__cause__
    if isinstance(cause, (exceptions.RateLimitExceededError, exceptions.NetworkError)):
        return True
    response = getattr(cause, "response", None)
    status = getattr(response, "status_code", None)
    return cause is not None and (response is None or (isinstance(status, int) and status >= 500))


def _reason(exc: BaseException) -> str:
    """``ConnectError: [Errno 111] Connection refused``: the first error of ``exc``'s chain
    that says something (atproto's NetworkError says nothing itself: httpx's, its cause, does)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = " ".join(str(seen).split())[:200]
        if text:
            return f"{type(seen).__name__}: {text}"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__
