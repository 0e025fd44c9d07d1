"""RFC 9457 problem details: the one place that maps errors to HTTP statuses.

Every error response names the offending ``field`` where there is one, so a
client (or a person) can tell which part of the request to fix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec
import msgspec.inspect
from litestar import Request, Response
from litestar.exceptions import HTTPException

from coop.federation import FederationError, PeerError, RequestAuthError
from coop.governance import GovernanceError, PolicyError
from coop.governance.canonical import duplicate_key
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
from coop.node.errors import (
    AuthError,
    BusyError,
    ConflictError,
    ForbiddenError,
    InputError,
    MalformedError,
    MediaTypeError,
    NodeError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    StateError,
    StorageError,
    UnsupportedFormatError,
)

__all__ = [
    "PROBLEM_JSON",
    "HtmlRenderer",
    "allowed_values",
    "classify",
    "decode_body",
    "exception_handlers",
    "problem_response",
    "refuse_duplicate_keys",
]

log = logging.getLogger("coop.http")

PROBLEM_JSON: Final = "application/problem+json"
T = TypeVar("T")

# (status, type slug, title); the most specific class wins (checked in order).
_MAP: Final[list[tuple[type[Exception], int, str, str]]] = [
    (MalformedError, 400, "malformed-request", "The request body cannot be read"),
    (MediaTypeError, 415, "unsupported-media-type", "Unsupported media type"),
    (PayloadTooLargeError, 413, "too-large", "Too large"),
    (ConflictError, 409, "idempotency-conflict", "Idempotency-Key reused"),
    (RequestTimeoutError, 408, "request-timeout", "Request body too slow"),
    (UnsupportedFormatError, 422, "unsupported-format", "Unrecognised content"),
    (InputError, 422, "invalid-field", "Invalid request"),
    (AuthError, 401, "unauthenticated", "Authentication required"),
    (ForbiddenError, 403, "forbidden", "Not allowed"),
    (NotFoundError, 404, "not-found", "Not found"),
    (StateError, 409, "wrong-state", "Not possible in the current state"),
    (RateLimitedError, 429, "rate-limited", "Too many requests"),
    (BusyError, 503, "busy", "Busy"),
    (StorageError, 500, "storage", "Storage failure"),
]
_ENCODER: Final = msgspec.json.Encoder()
_AT: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_FIELD: Final = re.compile(r"(?:required|unknown) field `(?P<name>[^`]+)`")


def problem_response(
    request: Request[Any, Any, Any] | None,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> Response[bytes]:
    body: dict[str, object] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    if request is not None:
        body["instance"] = request.url.path
    if field is not None:
        body["field"] = field
        body["errors"] = [{"field": field, "detail": detail}]
    return Response(_ENCODER.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def classify(exc: NodeError | GovernanceError) -> tuple[int, str, str]:
    """The status, type slug and title of a node's error (the web pages show the same)."""
    if isinstance(exc, PolicyError):
        return 409, "refused-by-policy", "Refused by the co-op's settings"
    if isinstance(exc, GovernanceError):
        return 422, "invalid-field", "Invalid request"
    return next((s, g, t) for k, s, g, t in _MAP if isinstance(exc, k))


def _node_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, NodeError | GovernanceError)
    headers: dict[str, str] = {}
    status, slug, title = classify(exc)
    detail = exc.message
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, BusyError):
        headers["Retry-After"] = "5"
    elif isinstance(exc, RequestTimeoutError):
        headers["connection"] = "close"  # the rest of that body is never read: start afresh
    elif isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="coop"'
    elif isinstance(exc, StorageError):
        log.error("storage failure on %s: %s", request.url.path, exc.message)
        detail = "the node could not read or write its database; nothing was changed"
    return problem_response(
        request,
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        field=exc.field,
        headers=headers,
    )


_DISCONNECTED: Final = "client disconnected prematurely"  # litestar's words (connection/request.py)


def _http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    field = None
    detail = exc.detail
    if status == 500 and detail == _DISCONNECTED:
        # The client stopped sending mid-body (or sent a broken chunk): its fault, not the node's.
        status, field = 400, "body"
        detail = "the request body ended before the length it announced (the client disconnected)"
    if status == 413:
        field, detail = "body", "the request body is over the node's size limit"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif status == 404:
        detail = f"nothing at {request.url.path}"
    elif status == 400 and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            field = str(first.get("key") or "") or None
            detail = f"{detail}: {first.get('message', '')}".strip(": ")
    slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(status, "http-error")
    headers = {k: v for k, v in (exc.headers or {}).items()}
    if status == 413:
        headers["connection"] = "close"  # the rest of that body is never read: start afresh
    return problem_response(
        request,
        status=status,
        slug=slug,
        title=_title(status),
        detail=detail,
        field=field,
        headers=headers,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        slug="internal",
        title="Internal error",
        detail="the node failed unexpectedly; nothing was changed",
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _federation_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, FederationError)
    if isinstance(exc, RequestAuthError):
        # A refusal for time says by how much the clocks differ (the signer's minus this node's).
        offset = getattr(exc, "offset", None)
        timing = {"reason": "clock_skew", "clock_offset_seconds": offset} if isinstance(offset, int) else None
        return problem_response(
            request,
            status=401,
            slug="peer-unauthenticated",
            title="Peer request not authenticated",
            detail=exc.message,
            field="Signature",
            headers={"WWW-Authenticate": 'Signature realm="coop"'},
            extra=timing,
        )
    if isinstance(exc, PeerError):
        return problem_response(
            request, status=502, slug="peer-error", title="Peer failed", detail=exc.message
        )
    return problem_response(
        request,
        status=400,
        slug="malformed-peer-message",
        title="Malformed peer message",
        detail=exc.message,
        field="body",
    )


HtmlRenderer = Callable[[Request[Any, Any, Any], dict[str, Any]], Response[Any]]
# The peer protocol is /federation/v1/; /federation/actions is a page.
_MACHINE_PATHS: Final = ("/api/", "/federation/v1/", "/schema")


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    """A person's browser asking for a page (never an API client, whatever it accepts)."""
    if request.url.path.startswith(_MACHINE_PATHS):
        return False
    return "text/html" in request.headers.get("accept", "")


def exception_handlers(html: HtmlRenderer | None = None) -> dict[int | type[Exception], Any]:
    """Problem details for every error; with ``html``, a browser gets the same problem as a page."""
    handlers: dict[type[Exception], Callable[[Request[Any, Any, Any], Exception], Response[bytes]]] = {
        FederationError: _federation_error,
        NodeError: _node_error,
        GovernanceError: _node_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    if html is None:
        return {kind: handler for kind, handler in handlers.items()}
    renderer = html

    def as_page(
        handler: Callable[[Request[Any, Any, Any], Exception], Response[bytes]],
    ) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
        def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            response = handler(request, exc)
            if not _wants_html(request):
                return response
            problem: dict[str, Any] = msgspec.json.decode(response.content)
            page = renderer(request, problem)
            page.status_code = response.status_code
            for name, value in response.headers.items():
                if name.lower() != "content-type":
                    page.headers[name] = value
            return page

        return handle

    return {kind: as_page(handler) for kind, handler in handlers.items()}


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode a JSON body, translating msgspec's errors into ones that name the field.

    A key twice in one object is refused (msgspec, like most parsers, keeps the last one: a
    body saying ``"consent": false, "consent": true`` must not read as consent).
    """
    try:
        # msgspec does not look inside fields kept raw (content, chat): check UTF-8 once for all.
        source = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"the body is not valid UTF-8 (byte {exc.start})", field="body") from None
    if json_too_deep(body):
        raise MalformedError(NESTED_TOO_DEEP, field="body")
    try:
        value = decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        path = match.group("path") if match else ""
        text = _AT.sub("", message)
        named = _FIELD.search(text)
        if named:
            path = f"{path}.{named.group('name')}" if path else named.group("name")
        choices = allowed_values(decoder.type, path) if text.startswith("Invalid enum value") else None
        if choices:
            # The wording the web form and the README use: "'X' is not one of: a, b".
            given = _ENUM_VALUE.match(text)
            text = f"{given.group(1) if given else 'the value'} is not one of: {', '.join(choices)}"
        elif path.rsplit(".", 1)[-1] == "attribution" and "matching regex" in text:
            given_value = _value_at(body, path)
            shown = repr(given_value) if isinstance(given_value, str) else "the value"
            text = f"{shown} is not one of: username, pseudonym:NAME, anonymous"
        raise InputError(f"{text}", field=path or "body") from None
    except UnicodeDecodeError:
        raise MalformedError("the body is not valid UTF-8", field="body") from None
    except msgspec.DecodeError as exc:
        raise MalformedError(f"the body is not valid JSON: {exc}", field="body") from None
    _refuse_repeated_keys(source)
    return value


_ENUM_VALUE: Final = re.compile(r"Invalid enum value ('.*')$", re.DOTALL)


def _value_at(body: bytes, path: str) -> object:
    """The value a body holds at a simple ``a.b`` path (for an error message), or None."""
    value: object = msgspec.json.decode(body)
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def refuse_duplicate_keys(text: str | bytes) -> None:
    """Refuse JSON holding one key twice in an object, at any depth (400, naming the key's path).

    One pass of the standard library's C scanner that builds no objects; on a 4 KB body it costs
    a few tens of microseconds (see tests/unit/test_duplicate_keys.py), beside msgspec's decode.
    """
    if json_too_deep(text):
        raise MalformedError(NESTED_TOO_DEEP, field="body")
    _refuse_repeated_keys(text)


def _refuse_repeated_keys(text: str | bytes) -> None:
    """:func:`refuse_duplicate_keys` on a body whose depth was checked."""
    try:
        path = duplicate_key(text)
    except ValueError:
        # msgspec read it and the standard parser does not: two readers disagree, refuse it.
        raise MalformedError("the body is not JSON every reader agrees on", field="body") from None
    if path is not None:
        raise MalformedError(
            f"the key {path!r} appears more than once in one object; send each key once", field=path
        )


def allowed_values(kind: Any, path: str) -> tuple[str, ...] | None:
    """The values an enum or Literal at ``path`` (``label``, ``user.scope``, ``tags[1]``) of ``kind`` allows.

    msgspec's "Invalid enum value 'x'" does not say what would do; the problem should.
    """
    info: Any = msgspec.inspect.type_info(kind)
    for part in re.findall(r"[^.\[\]]+", path):
        info = _plain(info)
        if isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)) and part.isdigit():
            info = info.item_type
        else:
            return None
    info = _plain(info)
    if isinstance(info, msgspec.inspect.EnumType):
        return tuple(str(member.value) for member in info.cls)
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(str(value) for value in info.values)
    return None


def _plain(info: Any) -> Any:
    """``info`` without its constraints and without ``| None``."""
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(kinds) == 1:
            return _plain(kinds[0])
    return info
