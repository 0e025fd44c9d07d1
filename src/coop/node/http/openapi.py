"""The OpenAPI document at /schema: bodies we decode ourselves, the JSON we answer, our problems.

Handlers read their bodies with prebuilt msgspec decoders (faster, and errors
name the field) and answer with bytes they encoded themselves, so the framework
sees neither type.  :func:`documented` puts msgspec's own JSON Schema of the
request and response types into the operation, inlined (litestar rebuilds
``components.schemas`` from its own registry), and declares the RFC 9457 problem
responses a route can give.  :class:`DocsPage` renders the document as one plain
HTML page from the node itself: no script, no third-party host, nothing inline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["ADMIN", "AUTH", "BODY", "PROBLEM_SCHEMA", "DocsPage", "documented", "schema_of", "with_body"]

PROBLEM_JSON: Final = "application/problem+json"

# RFC 9457 problem details as coop.node.http.problems writes them.
PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "a URI reference naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong, in words"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "the part of the request to fix"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "detail"],
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}

_PROBLEMS: Final = {
    400: "The request cannot be read: a parameter of the wrong type, a body that is not JSON or "
    "not UTF-8, or a key given twice",
    401: "No valid credential: send 'Authorization: Bearer <token>'",
    403: "The credential may not do this",
    404: "Nothing by that name or number",
    408: "The request body did not all arrive within the deadline",
    409: "Not possible in the current state, or refused by the co-op's settings",
    411: "A Content-Length is required",
    413: "The body is over the node's size limit",
    415: "The body is not application/json",
    422: "A field is invalid (the problem's 'field' names it)",
    429: "Too many requests: wait the Retry-After seconds",
    503: "Busy (a release being revised): retry after Retry-After seconds",
}

# Problems most routes share: every route is rate-limited per address.
AUTH: Final = (401, 429)  # a member's token
ADMIN: Final = (401, 403, 429)  # an admin's token
BODY: Final = (400, 413, 415, 422)  # a JSON body


def _inline(schema: Any, components: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(components[schema["$ref"]], components)
        return {key: _inline(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(item, components) for item in schema]
    return schema


def schema_of(kind: Any) -> Schema:
    """msgspec's JSON Schema of ``kind`` with every reference inlined."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template="{name}")
    return cast(Schema, _inline(schema, components))


def _problem(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=_PROBLEMS[status],
        content={PROBLEM_JSON: OpenAPIMediaType(schema=cast(Schema, PROBLEM_SCHEMA))},
    )


def documented(
    returns: Any = None,
    *,
    body: type[msgspec.Struct] | None = None,
    status: int = 200,
    problems: Iterable[int] = (),
    media_type: str = "application/json",
    also: Iterable[int] = (),
    files: Iterable[str] = (),
    idempotent: bool = False,
) -> type[Operation]:
    """An Operation class declaring the JSON ``returns`` at ``status`` (and ``also``), ``body``, ``problems``.

    ``returns=None`` keeps what the framework says of the answer (text); ``files`` declares a
    file of any of those media types instead; ``body`` adds the request body and the problems
    a JSON body can cause.
    """
    answer = None if returns is None else schema_of(returns)
    served = {media: OpenAPIMediaType(schema=cast(Schema, {})) for media in files}
    request = None
    if body is not None:
        described = (body.__doc__ or "").strip().splitlines()
        request = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=schema_of(body))},
            description=described[0] if described else None,
            required=True,
        )
    retry = None
    if idempotent:
        retry = Parameter(
            name="Idempotency-Key",
            param_in="header",
            required=False,
            description=(
                "Send the same key with a retry of the same body: the first answer is repeated (200)"
                " instead of storing twice; the same key with another body is a 409."
            ),
            schema=cast(Schema, {"type": "string", "minLength": 1, "maxLength": 200}),
        )
    statuses = sorted({429, *problems, *(BODY if body is not None else ())})
    codes = sorted({status, *also})

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            responses = dict(self.responses or {})
            if served:
                responses[str(status)] = OpenAPIResponse(description="The file", content=dict(served))
            if answer is not None:
                for code in codes:
                    previous = responses.get(str(code))
                    words = previous.description if isinstance(previous, OpenAPIResponse) else "OK"
                    responses[str(code)] = OpenAPIResponse(
                        description=words or "OK",
                        content={media_type: OpenAPIMediaType(schema=answer)},
                    )
            # The framework's own 400 (its validation error body) is answered as a problem here,
            # and a query parameter out of its range (whole_number) is a 422 naming it.
            queried = any(getattr(p, "param_in", None) == "query" for p in self.parameters or ())
            for code in [*statuses, *([400] if "400" in responses else []), *([422] if queried else [])]:
                responses[str(code)] = _problem(code)
            self.responses = dict(sorted(responses.items()))
            if request is not None:
                self.request_body = request
            if retry is not None:
                self.parameters = [*(self.parameters or ()), retry]

    return _Documented


def with_body(body: type[msgspec.Struct]) -> type[Operation]:
    """An Operation class whose request body is ``body`` as JSON (answers left as declared)."""
    return documented(body=body)


class DocsPage(OpenAPIRenderPlugin):
    """The API reference as one server-rendered page: no script, no font, no other host.

    It works offline and under a ``'self'``-only Content-Security-Policy; the machine-readable
    document is at ``/schema/openapi.json``.
    """

    def __init__(self) -> None:
        super().__init__(path=["/"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        title = html.escape(str(info.get("title", "API")))
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{title}</title>",
            '<link rel="stylesheet" href="/static/app.css">',
            "</head><body><main>",
            f"<h1>{title}</h1>",
            '<p class="lede">The node\'s HTTP API. The machine-readable OpenAPI document is '
            '<a href="/schema/openapi.json">/schema/openapi.json</a>; errors are RFC 9457 problem '
            "details (<code>application/problem+json</code>) naming the <code>field</code> to fix.</p>",
        ]
        paths: dict[str, Any] = openapi_schema.get("paths", {})
        parts.append("<h2>Operations</h2><ul>")
        for path, item in paths.items():
            for method in item:
                if method in _METHODS:
                    anchor = _anchor(method, path)
                    parts.append(
                        f'<li><a href="#{anchor}"><code>{method.upper()} {html.escape(path)}</code></a></li>'
                    )
        parts.append("</ul>")
        for path, item in paths.items():
            for method, operation in item.items():
                if method in _METHODS:
                    parts.extend(_operation(method, path, operation))
        parts.append("</main></body></html>")
        return "\n".join(parts).encode("utf-8")


_METHODS: Final = ("get", "put", "post", "delete", "patch", "head")


def _anchor(method: str, path: str) -> str:
    return html.escape(f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""), quote=True)


def _pre(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"


def _operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    out = [f'<section id="{_anchor(method, path)}">']
    out.append(f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>")
    for key in ("summary", "description"):
        if operation.get(key):
            out.append(f"<p>{html.escape(str(operation[key]))}</p>")
    parameters = operation.get("parameters") or []
    if parameters:
        out.append("<table><tr><th>Parameter</th><th>In</th><th>Schema</th></tr>")
        for parameter in parameters:
            name = html.escape(str(parameter.get("name", "")))
            where = html.escape(str(parameter.get("in", "")))
            schema = html.escape(json.dumps(parameter.get("schema", {}), ensure_ascii=False))
            out.append(f"<tr><td><code>{name}</code></td><td>{where}</td><td><code>{schema}</code></td></tr>")
        out.append("</table>")
    body = operation.get("requestBody")
    if body:
        out.append("<details><summary>Request body</summary>")
        for media, content in (body.get("content") or {}).items():
            out.append(f"<p><code>{html.escape(media)}</code></p>{_pre(content.get('schema', {}))}")
        out.append("</details>")
    responses: dict[str, Any] = operation.get("responses") or {}
    if responses:
        out.append("<details><summary>Responses</summary><dl>")
        for code, response in responses.items():
            words = html.escape(str(response.get("description", "")))
            media = ", ".join(html.escape(m) for m in (response.get("content") or {}))
            out.append(f"<dt><code>{html.escape(code)}</code> {media}</dt><dd>{words}</dd>")
        out.append("</dl></details>")
    out.append("</section>")
    return out
