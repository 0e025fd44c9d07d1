"""JSON nesting is bounded by one constant, not by the interpreter's recursion limit.

Before, a deeply nested body was refused only when msgspec or the standard library hit
``RecursionError``: at about 1,000 levels on Python 3.11, 1,500 on 3.12 and 10,000 on 3.13,
so 5,000 levels were "nested too deep" on one and a type error on another.  Now every reader
of untrusted JSON refuses over ``MAX_JSON_DEPTH`` levels with the same words and field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from coop.federation.errors import FederationError
from coop.federation.protocol import PullRecords, _decode
from coop.federation.transport import Request, Response
from coop.governance.envelope import open_envelope
from coop.governance.errors import InvalidValueError
from coop.governance.nesting import MAX_JSON_DEPTH, NESTED_TOO_DEEP, json_depth, json_too_deep
from coop.node.errors import InputError
from coop.node.http.app import create_app
from coop.node.intake.chat import IntakeFormat
from coop.node.intake.formats import detect_format, parse_content
from coop.node.peering.rounds import _Observed
from coop.node.runtime import Node

from factories import make_member, make_node

# Over the bound, past 3.11's recursion limit, and past 3.13's: one answer for all three.
OVER = (MAX_JSON_DEPTH + 1, 1_100, 20_000)


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def messages_with(extra: bytes) -> bytes:
    """A valid messages chat whose ignored field ``x`` holds ``extra`` (one level down)."""
    chat = b'{"messages": [{"role": "user", "content": "hi [{"}, {"role": "assistant", "content": "hello"}]'
    return chat + b', "x": ' + extra + b"}"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"42", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'"[[[{{{"', 0),
        (b'["a \\" [[[", "\\\\", [[]]]', 3),
        (b'"never closed [[[[', 0),
        (b'{"a": 1}]]]]]]', 1),
        (b'["a\n[[', 3),  # a raw newline ends a string: no JSON string holds one
        ('["é", {"ü": "[["}]', 2),
    ],
    ids=["empty", "scalar", "array", "mixed", "brackets-in-a-string", "escapes", "unterminated",
         "stray-closers", "newline-in-a-string", "str"],
)  # fmt: skip
def test_json_depth_counts_arrays_and_objects_not_brackets_in_strings(text: bytes | str, depth: int) -> None:
    assert json_depth(text) == depth


_TEXT = st.text(alphabet=st.sampled_from('ab []{}"\\\n\té\u2028'), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(_JSON, st.sampled_from([None, 2]), st.booleans())
def test_json_depth_is_the_depth_of_any_encoding(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert json_depth(text) == json_depth(text.encode()) == _depth(value)
    assert json_depth(msgspec.json.encode(value)) == _depth(value)


def test_json_too_deep_is_false_at_the_bound_and_true_past_it() -> None:
    assert not json_too_deep(nested(MAX_JSON_DEPTH))
    assert not json_too_deep(nested(MAX_JSON_DEPTH).decode())
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1))
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1).decode())
    # Brackets inside strings are text, however many.
    assert not json_too_deep(b'["' + b"[" * 10_000 + b'"]')


@dataclass
class Api:
    node: Node
    client: TestClient  # type: ignore[type-arg]
    member: dict[str, str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    node = make_node(tmp_path_factory.mktemp("nesting"))
    _, token = make_member(node, "sam")
    try:
        with TestClient(create_app(node, background=False)) as client:
            yield Api(node, client, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    finally:
        node.close()


def _contribution(extra_levels: int) -> bytes:
    # The body's object and the content's object are two levels; ``x`` holds the rest.
    return b'{"label": "good", "consent": true, "content": ' + messages_with(nested(extra_levels)) + b"}"


def test_http_body_nested_to_the_bound_is_accepted(api: Api) -> None:
    body = _contribution(MAX_JSON_DEPTH - 2)
    assert json_depth(body) == MAX_JSON_DEPTH
    response = api.client.post("/api/v1/contributions", headers=api.member, content=body)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("levels", OVER)
def test_http_body_nested_past_the_bound_is_a_400_naming_the_body(api: Api, levels: int) -> None:
    response = api.client.post("/api/v1/contributions", headers=api.member, content=_contribution(levels - 2))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == "body"
    assert problem["detail"] == NESTED_TOO_DEEP


def test_intake_content_nested_to_the_bound_parses() -> None:
    (chat,) = parse_content(messages_with(nested(MAX_JSON_DEPTH - 1)))
    assert [m.content for m in chat.messages] == ["hi [{", "hello"]


@pytest.mark.parametrize("levels", OVER)
def test_intake_content_nested_past_the_bound_is_refused_naming_the_content(levels: int) -> None:
    for parse in (parse_content, detect_format):
        with pytest.raises(InputError) as caught:
            parse(messages_with(nested(levels - 1)))
        assert (caught.value.message, caught.value.field) == (NESTED_TOO_DEEP, "content")


def test_intake_ndjson_line_nested_past_the_bound_is_refused() -> None:
    export = b'{"chat": {}}\n{"chat": ' + nested(2_000) + b"}\n"
    for fmt in (None, IntakeFormat.OPENWEBUI):
        with pytest.raises(InputError) as caught:
            parse_content(export, fmt)
        assert (caught.value.message, caught.value.field) == (NESTED_TOO_DEEP, "content")


def _envelope(payload: bytes) -> bytes:
    body = {"payloadType": "t", "payload": base64.b64encode(payload).decode(), "signatures": []}
    return msgspec.json.encode(body)


def test_envelope_payload_nested_to_the_bound_opens() -> None:
    _, payload = open_envelope(_envelope(nested(MAX_JSON_DEPTH)), payload_type="t", max_bytes=10**6)
    assert payload == nested(MAX_JSON_DEPTH)


@pytest.mark.parametrize("levels", OVER)
def test_envelope_and_peer_messages_nested_past_the_bound_are_refused(levels: int) -> None:
    with pytest.raises(InvalidValueError) as caught:
        open_envelope(_envelope(nested(levels)), payload_type="t", max_bytes=10**6)
    assert (caught.value.message, caught.value.field) == (NESTED_TOO_DEEP, "payload")
    with pytest.raises(InvalidValueError) as caught:
        open_envelope(
            b'{"payloadType": "t", "x": ' + nested(levels) + b"}", payload_type="t", max_bytes=10**6
        )
    assert caught.value.field == "envelope"
    with pytest.raises(FederationError, match="nested too deep"):
        _decode(PullRecords, b'{"hashes": [], "x": ' + nested(levels) + b"}")


class _Refusing:
    """A peer that refuses with the problem body given."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        return Response(401, {"Content-Type": "application/problem+json"}, self.body)


@pytest.mark.parametrize("levels", [3, 4_000])
def test_peer_problem_nested_past_the_bound_is_ignored_not_raised(levels: int) -> None:
    # 4,000 levels fit in the 8 KB read of a peer's problem: past 3.11's recursion limit.
    body = b'{"detail": "stale", "x": ' + nested(levels) + b"}"
    observed = _Observed(_Refusing(body), now=lambda: 1_700_000_000)
    observed.send(Request("GET", "http://127.0.0.1:9/", {}, b""), timeout=1.0, max_bytes=10_000)
    assert observed.problem == ("stale" if levels < MAX_JSON_DEPTH else None)
