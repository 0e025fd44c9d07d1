"""Parsers never crash: any input gives chats or an InputError; messages round-trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import Role
from coop.node.errors import InputError, NodeError
from coop.node.intake.chat import IntakeFormat, Limits, ParsedChat
from coop.node.intake.formats import parse_content
from coop.node.intake.messages import parse_messages

FORMATS = [None, *IntakeFormat]
SMALL = Limits(max_messages=20, max_message_chars=200, max_chats=5, max_tags=4, max_tag_chars=10)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a well-formed value, sometimes any JSON value, so that both paths run."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: json_values if n == 0 else valid)


ids = st.sampled_from(["a", "b", "c", "d", ""])
roles = mostly(st.sampled_from(["user", "assistant", "system", "tool", "User", "bot", ""]))
parts = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)})
content = mostly(st.text(max_size=30) | st.lists(mostly(parts), max_size=3))
timestamps = mostly(
    st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False)
)
tags = mostly(
    st.lists(
        mostly(st.text(max_size=12) | st.fixed_dictionaries({"name": st.text(max_size=12)})),
        max_size=6,
    )
)
annotation_values = st.fixed_dictionaries(
    {},
    optional={
        "rating": mostly(st.sampled_from([1, -1, 0, None, 2.5])),
        "reason": mostly(st.text(max_size=10)),
        "comment": mostly(st.text(max_size=10)),
        "tags": tags,
    },
)
messages = st.fixed_dictionaries(
    {"role": roles, "content": content},
    optional={
        "parentId": mostly(ids | st.none()),
        "childrenIds": st.lists(ids, max_size=3),
        "model": mostly(st.text(max_size=10)),
        "timestamp": timestamps,
        "annotation": mostly(annotation_values),
        "extra": json_values,
    },
)
histories = st.fixed_dictionaries(
    {},
    optional={
        "messages": mostly(st.dictionaries(ids, messages, max_size=5)),
        "currentId": mostly(ids | st.none()),
    },
)
chats = st.fixed_dictionaries(
    {},
    optional={
        "id": mostly(st.text(max_size=8)),
        "title": st.text(max_size=20),
        "models": mostly(st.lists(st.text(max_size=10), max_size=3)),
        "history": mostly(histories),
        "messages": mostly(st.lists(messages, max_size=5)),
        "tags": tags,
        "timestamp": timestamps,
    },
)
rows = st.fixed_dictionaries(
    {"chat": mostly(chats)},
    optional={
        "id": st.text(max_size=8),
        "user_id": st.text(max_size=8),
        "title": mostly(st.text(max_size=20)),
        "created_at": timestamps,
        "meta": mostly(st.fixed_dictionaries({}, optional={"tags": tags})),
    },
)
uploads = st.one_of(
    chats,
    rows,
    st.lists(rows | chats, max_size=4),
    st.fixed_dictionaries(
        {"messages": st.lists(messages, max_size=5)}, optional={"model": st.text(), "tags": tags}
    ),
    st.lists(messages, max_size=5),
    json_values,
)


def check(data: bytes, fmt: IntakeFormat | None) -> None:
    try:
        chats = parse_content(data, fmt, limits=SMALL)
    except InputError:
        return
    assert isinstance(chats, list)
    assert chats
    assert all(isinstance(chat, ParsedChat) and chat.messages for chat in chats)
    for chat in chats:
        assert all(0 <= f.message_index < len(chat.messages) for f in chat.feedback)


def test_input_error_is_a_node_error() -> None:
    assert issubclass(InputError, NodeError)


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(FORMATS))
def test_parse_content_arbitrary_bytes_returns_chats_or_raises_input_error(
    data: bytes, fmt: IntakeFormat | None
) -> None:
    check(data, fmt)


@settings(deadline=None, max_examples=300)
@given(data=st.text(max_size=300), fmt=st.sampled_from(FORMATS))
def test_parse_content_arbitrary_text_returns_chats_or_raises_input_error(
    data: str, fmt: IntakeFormat | None
) -> None:
    check(data.encode(), fmt)


@settings(deadline=None, max_examples=500)
@given(upload=uploads, fmt=st.sampled_from(FORMATS), as_ndjson=st.booleans())
def test_parse_content_chat_shaped_json_returns_chats_or_raises_input_error(
    upload: Any, fmt: IntakeFormat | None, as_ndjson: bool
) -> None:
    if as_ndjson and isinstance(upload, list):
        data = "\n".join(json.dumps(item) for item in upload).encode()
    else:
        data = json.dumps(upload).encode()
    check(data, fmt)


role_values = st.sampled_from([role.value for role in Role])
contents = st.text(min_size=1, max_size=200).filter(lambda text: text.strip() != "")


@settings(deadline=None)
@given(items=st.lists(st.tuples(role_values, contents), min_size=1, max_size=20))
def test_parse_messages_encoded_messages_round_trip(items: list[tuple[str, str]]) -> None:
    data = json.dumps({"messages": [{"role": r, "content": c} for r, c in items]}).encode()

    parsed = parse_messages(data)

    assert [(m.role.value, m.content) for m in parsed.messages] == items
    assert parse_content(data)[0].messages == parsed.messages


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[int | None], list[str], int]:
    """Parent indices of a message tree (0 is the root), each message's role, and a node."""
    size = draw(st.integers(min_value=1, max_value=12))
    parents: list[int | None] = [None]
    parents += [draw(st.integers(min_value=0, max_value=i - 1)) for i in range(1, size)]
    message_roles = draw(st.lists(role_values, min_size=size, max_size=size))
    return parents, message_roles, draw(st.integers(min_value=0, max_value=size - 1))


@settings(deadline=None)
@given(tree=trees(), rated=st.sets(st.integers(min_value=0, max_value=11)))
def test_parse_content_history_tree_gives_the_branch_to_current_id(
    tree: tuple[list[int | None], list[str], int], rated: set[int]
) -> None:
    parents, message_roles, current = tree
    history = {
        f"id-{i}": {
            "id": f"id-{i}",
            "parentId": None if parent is None else f"id-{parent}",
            "childrenIds": [f"id-{j}" for j, p in enumerate(parents) if p == i],
            "role": message_roles[i],
            "content": f"message {i}",
            **({"annotation": {"rating": 1}} if i in rated else {}),
        }
        for i, parent in enumerate(parents)
    }
    row = {"id": "c", "chat": {"history": {"messages": history, "currentId": f"id-{current}"}}}
    branch: list[int] = []
    node: int | None = current
    while node is not None:
        branch.append(node)
        node = parents[node]
    branch.reverse()

    (parsed,) = parse_content(json.dumps([row]).encode())

    assert [m.content for m in parsed.messages] == [f"message {i}" for i in branch]
    assert [m.role.value for m in parsed.messages] == [message_roles[i] for i in branch]
    assert [f.message_index for f in parsed.feedback] == [k for k, i in enumerate(branch) if i in rated]
