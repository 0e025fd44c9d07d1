"""OpenAPI documentation for bodies we decode ourselves.

Handlers read their bodies with prebuilt msgspec decoders (faster, and errors
name the field), so the framework cannot see the body type; this module puts
msgspec's own JSON Schema of each request type into the operation, inlined
(litestar rebuilds ``components.schemas`` from its own registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema

__all__ = ["with_body"]


def with_body(body: type[msgspec.Struct]) -> type[Operation]:
    """An Operation class whose request body is ``body`` as JSON."""
    (schema,), components = msgspec.json.schema_components([body], ref_template="{name}")
    inlined = cast(Schema, _inline(schema, components))
    described = (body.__doc__ or "").strip().splitlines()

    @dataclass
    class _WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=inlined)},
                description=described[0] if described else None,
                required=True,
            )

    return _WithBody


def _inline(schema: Any, components: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(components[schema["$ref"]], components)
        return {key: _inline(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(item, components) for item in schema]
    return schema
