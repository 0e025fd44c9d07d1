"""Open WebUI chats and exports: shapes, the shared branch, feedback, tags, times, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from coop.governance import Feedback, Message, Role
from coop.node.errors import InputError, PayloadTooLargeError, UnsupportedFormatError
from coop.node.intake.chat import IntakeFormat, Limits
from coop.node.intake.openwebui import parse_openwebui, unix_seconds

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
USER_ID = "0c6a2f4e-91d3-4b8a-a7e5-5f3d9b1c2e80"
T = 1718035200  # 2024-06-10, seconds


def message(
    mid: str,
    parent: str | None,
    role: str,
    content: Any,
    *,
    children: tuple[str, ...] = (),
    model: str | None = "llama3.1:8b",
    **extra: Any,
) -> dict[str, Any]:
    """A message as Open WebUI keeps it in ``chat.history.messages``."""
    item: dict[str, Any] = {
        "id": mid,
        "parentId": parent,
        "childrenIds": list(children),
        "role": role,
        "content": content,
        "timestamp": T,
        "done": True,
    }
    if role == "assistant":
        item |= {"model": model, "modelName": model, "modelIdx": 0}
    else:
        item["models"] = [model]
    return item | extra


def chat(items: list[dict[str, Any]], current: str | None = None, **extra: Any) -> dict[str, Any]:
    """An inner chat object; ``current`` defaults to the last message."""
    current = items[-1]["id"] if current is None and items else current
    return {
        "id": "",
        "title": "Sourdough starter",
        "models": ["llama3.1:8b"],
        "params": {},
        "history": {"messages": {m["id"]: m for m in items}, "currentId": current},
        "messages": [],
        "tags": [],
        "timestamp": T * 1000,
        "files": [],
    } | extra


def row(inner: dict[str, Any], chat_id: str = "chat-1", **extra: Any) -> dict[str, Any]:
    """A chat row as the download and the export hold it, owner and all."""
    return {
        "id": chat_id,
        "user_id": USER_ID,
        "title": "Sourdough starter",
        "chat": inner,
        "updated_at": T + 600,
        "created_at": T,
        "share_id": None,
        "archived": False,
        "pinned": False,
        "meta": {"tags": ["cooking"]},
        "folder_id": None,
    } | extra


def simple_chat(n: int = 2) -> dict[str, Any]:
    roles = ["user", "assistant"]
    items = [message(f"m{i}", f"m{i - 1}" if i else None, roles[i % 2], f"turn {i}") for i in range(n)]
    return chat(items)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def ndjson(*values: Any) -> bytes:
    return b"".join(encode(v) + b"\n" for v in values)


def one(data: bytes, **kwargs: Any) -> Any:
    chats = parse_openwebui(data, **kwargs)
    assert len(chats) == 1
    return chats[0]


# Shapes


def test_parse_openwebui_per_chat_download_reads_the_row() -> None:
    parsed = one(encode([row(simple_chat())]))

    assert parsed.format is IntakeFormat.OPENWEBUI
    assert parsed.messages == (
        Message(Role.USER, "turn 0", model=None, timestamp=T),
        Message(Role.ASSISTANT, "turn 1", model="llama3.1:8b", timestamp=T),
    )
    assert parsed.source_id == "chat-1"
    assert parsed.title == "Sourdough starter"
    assert parsed.created_at == T
    assert parsed.model == "llama3.1:8b"
    assert parsed.models == ("llama3.1:8b",)
    assert parsed.tags == ("cooking",)


def test_parse_openwebui_export_array_returns_every_chat_in_order() -> None:
    rows = [row(simple_chat(), chat_id=f"chat-{i}") for i in range(3)]

    chats = parse_openwebui(encode(rows))

    assert [c.source_id for c in chats] == ["chat-0", "chat-1", "chat-2"]


def test_parse_openwebui_ndjson_export_returns_every_chat() -> None:
    data = ndjson(row(simple_chat(), "a"), row(simple_chat(4), "b")).replace(b"\n", b"\r\n")

    chats = parse_openwebui(b"\r\n" + data + b"\n\n")

    assert [(c.source_id, len(c.messages)) for c in chats] == [("a", 2), ("b", 4)]


def test_parse_openwebui_bare_chat_uses_chat_id_and_timestamp_in_ms() -> None:
    parsed = one(encode(simple_chat() | {"id": "bare-1"}))

    assert parsed.source_id == "bare-1"
    assert parsed.created_at == T
    assert parsed.tags == ()


def test_parse_openwebui_chat_wrapper_is_read_like_a_row() -> None:
    parsed = one(encode({"chat": simple_chat() | {"id": "wrapped"}}))

    assert parsed.source_id == "wrapped"
    assert len(parsed.messages) == 2


def test_parse_openwebui_byte_order_mark_and_whitespace_are_ignored() -> None:
    parsed = one(b"\xef\xbb\xbf \n" + encode([row(simple_chat())]) + b"\n")

    assert parsed.source_id == "chat-1"


@pytest.mark.parametrize("name", ["openwebui-export.json", "openwebui-chat.json", "openwebui-export.ndjson"])
def test_parse_openwebui_samples_parse_without_user_ids(name: str) -> None:
    data = (SAMPLES / name).read_bytes()

    chats = parse_openwebui(data)

    assert chats
    assert all(len(c.messages) >= 2 for c in chats)
    assert b'"user_id"' in data
    assert b"3f1c2a9e-7b4d" not in msgspec.json.encode(chats)  # the samples' fake owner


def test_parse_openwebui_sample_export_keeps_the_regenerated_answer_and_the_thumbs_down() -> None:
    sourdough, leap, landlord = parse_openwebui((SAMPLES / "openwebui-export.json").read_bytes())

    assert "Temperature" in sourdough.messages[1].content
    assert leap.feedback[0].rating == -1
    assert leap.feedback[0].reason == "Not factually correct"
    assert leap.feedback[0].comment
    assert "@example.com" in landlord.messages[0].content
    assert {leap.model, sourdough.model} == {"qwen2.5:7b", "llama3.1:8b"}


# The shared branch


def regenerated(current: str) -> dict[str, Any]:
    """A question answered twice (regenerated), each answer followed up once."""
    return chat(
        [
            message("q", None, "user", "Why is my starter flat?", children=("a1", "a2")),
            message("a1", "q", "assistant", "Be patient.", children=("f1",), model="qwen2.5:7b"),
            message("f1", "a1", "user", "Patient how long?"),
            message("a2", "q", "assistant", "Keep it warmer.", children=("f2",)),
            message("f2", "a2", "user", "How warm?"),
        ],
        current=current,
    )


@pytest.mark.parametrize(
    ("current", "contents"),
    [
        ("f2", ["Why is my starter flat?", "Keep it warmer.", "How warm?"]),
        ("f1", ["Why is my starter flat?", "Be patient.", "Patient how long?"]),
        ("a2", ["Why is my starter flat?", "Keep it warmer."]),
    ],
)
def test_parse_openwebui_branch_follows_current_id_to_the_root(current: str, contents: list[str]) -> None:
    parsed = one(encode([row(regenerated(current))]))

    assert [m.content for m in parsed.messages] == contents


def test_parse_openwebui_regenerated_answer_sets_model_from_the_branch() -> None:
    parsed = one(encode([row(regenerated("f1"))]))

    assert parsed.model == "qwen2.5:7b"
    assert parsed.models == ("llama3.1:8b", "qwen2.5:7b")


def test_parse_openwebui_malformed_message_off_the_branch_is_ignored() -> None:
    inner = regenerated("f2")
    inner["history"]["messages"]["a1"]["role"] = 42

    parsed = one(encode([row(inner)]))

    assert len(parsed.messages) == 3


def test_parse_openwebui_dangling_parent_starts_the_branch_there() -> None:
    inner = chat([message("a", "deleted", "user", "Hello"), message("b", "a", "assistant", "Hi")])

    parsed = one(encode([row(inner)]))

    assert [m.content for m in parsed.messages] == ["Hello", "Hi"]


def test_parse_openwebui_no_history_falls_back_to_chat_messages() -> None:
    legacy = [
        {"role": "user", "content": "Hello", "timestamp": T},
        {"role": "assistant", "content": "Hi", "model": "llama3.1:8b"},
    ]
    inner = {"title": "Old", "models": ["llama3.1:8b"], "messages": legacy}

    parsed = one(encode([row(inner)]))

    assert [m.content for m in parsed.messages] == ["Hello", "Hi"]


def test_parse_openwebui_unknown_current_id_falls_back_to_chat_messages() -> None:
    inner = simple_chat() | {"messages": [{"role": "user", "content": "from the list"}]}
    inner["history"]["currentId"] = "gone"

    parsed = one(encode([row(inner)]))

    assert [m.content for m in parsed.messages] == ["from the list"]


def test_parse_openwebui_cycle_falls_back_to_chat_messages() -> None:
    inner = chat(
        [message("a", "b", "user", "one"), message("b", "a", "assistant", "two")],
        messages=[{"role": "user", "content": "from the list"}],
    )

    parsed = one(encode([row(inner)]))

    assert [m.content for m in parsed.messages] == ["from the list"]


def test_parse_openwebui_cycle_without_fallback_raises_naming_the_parent() -> None:
    inner = chat([message("a", "b", "user", "one"), message("b", "a", "assistant", "two")])

    with pytest.raises(InputError, match="cycle") as caught:
        parse_openwebui(encode([row(inner)]))

    assert caught.value.field == 'content[0].chat.history.messages["b"].parentId'


def test_parse_openwebui_self_parent_without_fallback_raises() -> None:
    inner = chat([message("a", "a", "user", "one")])

    with pytest.raises(InputError, match="cycle"):
        parse_openwebui(encode(inner))


# Feedback, content, tags, times, privacy


def test_parse_openwebui_annotations_become_feedback_at_branch_indices() -> None:
    inner = chat(
        [
            message("s", None, "system", "Be brief."),
            message("u", "s", "user", "Was 1900 a leap year?"),
            message("x", "u", "assistant", "", annotation={"rating": -1}),  # failed, dropped
            message(
                "a",
                "x",
                "assistant",
                "Yes, 1900 was a leap year.",
                annotation={
                    "rating": -1,
                    "reason": " Not factually correct ",
                    "comment": "1900 is not divisible by 400.",
                    "tags": ["dates", {"name": "calendar"}],
                    "details": {"rating": 2},
                },
            ),
            message("u2", "a", "user", "Sure?"),
            message("a2", "u2", "assistant", "No: it was not.", annotation={"rating": 1}),
        ]
    )

    parsed = one(encode([row(inner)]))

    assert [m.role for m in parsed.messages] == [
        Role.SYSTEM,
        Role.USER,
        Role.ASSISTANT,
        Role.USER,
        Role.ASSISTANT,
    ]
    assert parsed.feedback == (
        Feedback(
            2,
            -1,
            "Not factually correct",
            "1900 is not divisible by 400.",
            ("dates", "calendar"),
        ),
        Feedback(4, 1),
    )


@pytest.mark.parametrize(
    "annotation",
    [{}, {"rating": None}, {"rating": 0, "reason": "  ", "comment": ""}, {"tags": []}],
)
def test_parse_openwebui_empty_annotation_gives_no_feedback(annotation: dict[str, Any]) -> None:
    inner = chat(
        [
            message("u", None, "user", "Hi"),
            message("a", "u", "assistant", "Hello", annotation=annotation),
        ]
    )

    assert one(encode(inner)).feedback == ()


def test_parse_openwebui_content_parts_join_text_and_skip_images() -> None:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "Be brief."},
    ]
    inner = chat([message("u", None, "user", parts), message("a", "u", "assistant", "A cat.")])

    parsed = one(encode(inner))

    assert parsed.messages[0].content == "What is in this picture?\nBe brief."


@pytest.mark.parametrize(
    ("meta", "legacy", "expected"),
    [
        ({"tags": ["cooking", "baking"]}, [], ("cooking", "baking")),
        ({}, [{"name": "cooking"}, {"name": "baking"}], ("cooking", "baking")),
        (None, ["cooking", {"name": "baking"}], ("cooking", "baking")),
        ({"tags": [" cooking ", "", "cooking", {"name": None}]}, ["ignored"], ("cooking",)),
        ({"tags": []}, ["ignored"], ()),
    ],
    ids=["meta-strings", "legacy-objects", "legacy-mixed", "cleaned", "meta-wins"],
)
def test_parse_openwebui_tags_read_from_meta_or_legacy_chat(
    meta: dict[str, Any] | None, legacy: list[Any], expected: tuple[str, ...]
) -> None:
    parsed = one(encode([row(simple_chat() | {"tags": legacy}, meta=meta)]))

    assert parsed.tags == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T, T),
        (T * 1000, T),
        (T * 1000 + 999, T),
        (T * 1_000_000, T),
        (T * 1_000_000_000, T),
        (T + 0.75, T),
        (None, None),
        (0, None),
        (-T, None),
        (0.5, None),
        (10**20, None),
        (10**30, None),
        (True, None),
    ],
)
def test_unix_seconds_units_normalise_or_none(value: float | None, expected: int | None) -> None:
    assert unix_seconds(value) == expected


def test_parse_openwebui_timestamps_in_ms_become_seconds() -> None:
    inner = chat([message("u", None, "user", "Hi", timestamp=T * 1000 + 123)])

    parsed = one(encode(row(inner, created_at=T * 1000)))

    assert parsed.created_at == T
    assert parsed.messages[0].timestamp == T


def test_parse_openwebui_out_of_range_timestamps_become_none() -> None:
    inner = chat([message("u", None, "user", "Hi", timestamp=10**25)], timestamp=-1)

    parsed = one(encode(row(inner, created_at=0)))

    assert parsed.created_at is None
    assert parsed.messages[0].timestamp is None


def test_parse_openwebui_user_ids_and_emails_of_accounts_are_never_kept() -> None:
    inner = simple_chat()
    inner["history"]["messages"]["m0"]["user"] = {"id": USER_ID, "email": "ann@example.com"}
    data = encode([row(inner, user={"email": "ann@example.com", "name": "Ann"})])

    encoded = msgspec.json.encode(parse_openwebui(data))

    assert USER_ID.encode() not in encoded
    assert b"ann@example.com" not in encoded


def test_parse_openwebui_unknown_fields_are_ignored() -> None:
    inner = simple_chat() | {"future": {"nested": [1, 2, {"x": None}]}, "params": "odd"}
    inner["history"]["messages"]["m1"]["sources"] = [{"what": "ever"}]

    parsed = one(encode([row(inner, variables={"a": 1}, tasks=[1], folder_id=7)]))

    assert len(parsed.messages) == 2


def test_parse_openwebui_export_skips_chats_without_messages() -> None:
    rows = [row(chat([]), "empty"), row(simple_chat(), "full"), row({}, "blank")]

    chats = parse_openwebui(encode(rows))

    assert [c.source_id for c in chats] == ["full"]


# Errors name the chat and the part


def chats_with(bad: dict[str, Any], at: int, count: int) -> list[dict[str, Any]]:
    rows = [row(simple_chat(), f"chat-{i}") for i in range(count)]
    rows[at] = bad
    return rows


def bare_chats_with_role(role: str) -> list[dict[str, Any]]:
    legacy = [{"role": ["user", "assistant"][i % 2], "content": f"turn {i}"} for i in range(6)]
    legacy[5]["role"] = role
    chats: list[dict[str, Any]] = [{"id": f"c{i}", "messages": legacy[:2]} for i in range(3)]
    chats[2]["messages"] = legacy
    return chats


def unknown_current() -> dict[str, Any]:
    inner = simple_chat()
    inner["history"]["currentId"] = "nope"
    return row(inner)


def wrong_type(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    inner = simple_chat()
    target = inner["history"]["messages"]["m1"]
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return row(inner)


def deep(levels: int) -> bytes:
    return b'{"chat": {"history": ' + b"[" * levels + b"]" * levels + b"}}"


ERRORS: list[tuple[str, bytes, str, type[InputError], str]] = [
    ("empty", b"", "content", InputError, "empty"),
    ("whitespace", b" \n\t", "content", InputError, "empty"),
    ("empty-array", b"[]", "content", InputError, "no chats"),
    ("scalar", b"42", "content", UnsupportedFormatError, "Open WebUI"),
    ("text", b"User: hi", "content", UnsupportedFormatError, "Open WebUI"),
    ("malformed", b'{"chat": {', "content", InputError, "not valid JSON"),
    ("malformed-array", b'[{"chat": {}}', "content", InputError, "not valid JSON"),
    ("not-object", b"[1]", "content[0]", InputError, "object"),
    (
        "role-in-history",
        encode(chats_with(wrong_type(("role",), "bot"), 1, 2)),
        'content[1].chat.history.messages["m1"].role',
        InputError,
        "not one of",
    ),
    (
        "role-in-legacy-messages",
        encode(bare_chats_with_role("robot")),
        "content[2].messages[5].role",
        InputError,
        "'robot' is not one of: system, user, assistant, tool",
    ),
    (
        "unknown-current-id",
        encode(chats_with(unknown_current(), 3, 4)),
        "content[3].chat.history.currentId",
        InputError,
        "'nope' is not in history.messages",
    ),
    (
        "missing-current-id",
        encode(row(simple_chat() | {"history": {"messages": {"m": {"role": "user"}}}})),
        "content.chat.history.currentId",
        InputError,
        "missing",
    ),
    (
        "content-type",
        encode([wrong_type(("content",), 7)]),
        'content[0].chat.history.messages["m1"].content',
        InputError,
        "Expected",
    ),
    (
        "rating-type",
        encode([wrong_type(("annotation", "rating"), "good")]),
        'content[0].chat.history.messages["m1"].annotation.rating',
        InputError,
        "Expected",
    ),
    (
        "current-id-type",
        encode([row(simple_chat() | {"history": {"currentId": 5}})]),
        "content[0].chat.history.currentId",
        InputError,
        "Expected",
    ),
    (
        "missing-role",
        encode({"messages": [{"content": "hi"}], "models": []}),
        "content.messages[0]",
        InputError,
        "role",
    ),
    (
        "ndjson-line",
        ndjson(*[row(simple_chat())] * 6) + b'{"chat": {"history": 3}}\n',
        "line 7.chat.history",
        InputError,
        "Expected",
    ),
    (
        "ndjson-broken-line",
        ndjson(row(simple_chat())) + b"\n" + b'{"chat": \n',
        "line 3",
        InputError,
        "not valid JSON",
    ),
    ("no-messages", encode([row(chat([]))]), "content[0].chat", InputError, "no messages"),
    (
        "only-empty-messages",
        encode(chat([message("u", None, "user", "  ")])),
        "content",
        InputError,
        "no messages",
    ),
    ("too-deep", deep(5000), "content", InputError, "JSON nested too deep"),
    (
        "too-deep-in-row",
        b"[" + deep(3000) + b"]",
        "content",
        InputError,
        "JSON nested too deep",
    ),
    ("invalid-utf8", b'[{"title": "\xff"}]', "content[0]", InputError, "UTF-8"),
]


@pytest.mark.parametrize(
    ("data", "field", "kind", "message"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_parse_openwebui_bad_input_raises_naming_the_field(
    data: bytes, field: str, kind: type[InputError], message: str
) -> None:
    with pytest.raises(kind, match=message) as caught:
        parse_openwebui(data)

    assert caught.value.field == field


SMALL = Limits(max_messages=3, max_message_chars=20, max_chats=2, max_tags=2, max_tag_chars=8)

LIMIT_CASES: list[tuple[str, bytes, str]] = [
    ("history-messages", encode([row(simple_chat(4))]), "content[0].chat.history.messages"),
    (
        "legacy-messages",
        encode({"models": [], "messages": [{"role": "user", "content": "x"}] * 4}),
        "content.messages",
    ),
    (
        "message-chars",
        encode([row(chat([message("u", None, "user", "x" * 21)]))]),
        'content[0].chat.history.messages["u"].content',
    ),
    ("chats-array", encode([row(simple_chat())] * 3), "content"),
    ("chats-ndjson", ndjson(*[row(simple_chat())] * 3), "content"),
    ("tags", encode([row(simple_chat(), meta={"tags": ["a", "b", "c"]})]), "content[0].meta.tags"),
    (
        "tag-chars",
        encode([row(simple_chat(), meta={"tags": ["a", "far-too-long"]})]),
        "content[0].meta.tags[1]",
    ),
    (
        "legacy-tag-chars",
        encode(simple_chat() | {"tags": [{"name": "far-too-long"}]}),
        "content.tags[0]",
    ),
    (
        "annotation-comment",
        encode(chat([message("u", None, "user", "hi", annotation={"comment": "x" * 21})])),
        'content.history.messages["u"].annotation.comment',
    ),
]


@pytest.mark.parametrize(
    ("data", "field"), [case[1:] for case in LIMIT_CASES], ids=[case[0] for case in LIMIT_CASES]
)
def test_parse_openwebui_over_a_limit_raises_payload_too_large(data: bytes, field: str) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        parse_openwebui(data, limits=SMALL)

    assert caught.value.field == field


def test_parse_openwebui_at_the_limits_is_accepted() -> None:
    data = encode([row(simple_chat(3), meta={"tags": ["a", "abcdefgh"]})] * 2)

    assert len(parse_openwebui(data, limits=SMALL)) == 2
