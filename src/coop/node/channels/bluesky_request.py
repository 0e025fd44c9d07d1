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

import time
from typing import Any, Final

import httpx
from atproto_client import exceptions
from atproto_client.request import Request, RequestBase, _handle_request_errors, _handle_response

__all__ = ["DEADLINE_S", "MAX_BODY", "MAX_ERROR_BODY", "BoundedRequest", "redirect_of"]

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
