"""Plain text, structured messages, format detection and picking a chat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coop.governance import Message, Role
from coop.node.errors import InputError, PayloadTooLargeError, UnsupportedFormatError
from coop.node.intake.chat import IntakeFormat, Limits, ParsedChat
from coop.node.intake.formats import detect_format, parse_content, select_chat
from coop.node.intake.messages import parse_messages
from coop.node.intake.text import parse_text

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL = Limits(max_messages=2, max_message_chars=10, max_tags=2, max_tag_chars=5)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def pairs(chat: ParsedChat) -> list[tuple[Role, str]]:
    return [(m.role, m.content) for m in chat.messages]


# Plain text


def test_parse_text_marked_turns_become_messages() -> None:
    text = (
        "User: Was 1900 a leap year?\n"
        "Assistant: No.\n"
        "Century years must be divisible by 400.\n"
        "\n"
        "user:how about 2000?\n"
        "ASSISTANT : Yes.\n"
    )

    parsed = parse_text(text)

    assert parsed.format is IntakeFormat.TEXT
    assert pairs(parsed) == [
        (Role.USER, "Was 1900 a leap year?"),
        (Role.ASSISTANT, "No.\nCentury years must be divisible by 400."),
        (Role.USER, "how about 2000?"),
        (Role.ASSISTANT, "Yes."),
    ]


def test_parse_text_human_ai_and_system_markers_are_accepted() -> None:
    parsed = parse_text("System: Be brief.\nHuman: Hi\nAI: Hello")

    assert [m.role for m in parsed.messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT]


def test_parse_text_turn_may_start_on_the_next_line_and_keeps_inner_blank_lines() -> None:
    parsed = parse_text("\n\nUser:\n  Write a haiku.  \nAssistant:\nline one\n\nline two\n\n")

    assert pairs(parsed) == [
        (Role.USER, "Write a haiku."),
        (Role.ASSISTANT, "line one\n\nline two"),
    ]


def test_parse_text_empty_turns_are_dropped() -> None:
    parsed = parse_text("User: hi\nAssistant:\n   \nUser: anyone?\nAssistant: yes")

    assert pairs(parsed) == [
        (Role.USER, "hi"),
        (Role.USER, "anyone?"),
        (Role.ASSISTANT, "yes"),
    ]


def test_parse_text_marker_inside_a_line_is_content() -> None:
    parsed = parse_text("User: Say 'Assistant: hi' please\nAssistant: Assistant: hi")

    assert pairs(parsed) == [
        (Role.USER, "Say 'Assistant: hi' please"),
        (Role.ASSISTANT, "Assistant: hi"),
    ]


def test_parse_text_prompt_and_response_split_by_dashes() -> None:
    parsed = parse_text("What is 24 x 17?\r\n---\r\n408.\r\n---\r\nChecked twice.")

    assert pairs(parsed) == [
        (Role.USER, "What is 24 x 17?"),
        (Role.ASSISTANT, "408.\n---\nChecked twice."),
    ]


def test_parse_text_turns_win_over_dashes_when_text_starts_with_a_marker() -> None:
    parsed = parse_text("User: hi\n---\nAssistant: hello")

    assert pairs(parsed) == [(Role.USER, "hi\n---"), (Role.ASSISTANT, "hello")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" \n\t\n", "empty"),
        ("Just some words.\nAnd more.", "'User:'.*'---'"),
        ("User:\nAssistant:  \n", "only empty turns"),
        ("A chat I had:\nUser: hi\nAssistant: hello", "line 2 starts a turn"),
        ("  User: indented markers do not count", "'User:'.*'---'"),
        ("prompt\n---\n  ", "both sides"),
        ("---\nresponse", "both sides"),
    ],
)
def test_parse_text_without_a_chat_shape_raises_on_content(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_text(text)

    assert caught.value.field == "content"


@pytest.mark.parametrize("text", ["User: a\nAssistant: b\nUser: c", "User: this turn is too long"])
def test_parse_text_over_a_limit_raises_payload_too_large(text: str) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        parse_text(text, limits=SMALL)

    assert caught.value.field == "content"


# Structured messages


def test_parse_messages_object_keeps_model_tags_and_text_parts() -> None:
    body = {
        "model": "mistral:7b",
        "tags": ["food", {"name": "units"}, "food"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "250 g flour in cups?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {"role": "assistant", "content": "About 2 cups.", "name": "ignored"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]},
        ],
    }

    parsed = parse_messages(encode(body))

    assert parsed.format is IntakeFormat.MESSAGES
    assert parsed.messages == (
        Message(Role.SYSTEM, "Be brief."),
        Message(Role.USER, "250 g flour in cups?"),
        Message(Role.ASSISTANT, "About 2 cups."),
    )
    assert parsed.model == "mistral:7b"
    assert parsed.models == ("mistral:7b",)
    assert parsed.tags == ("food", "units")


def test_parse_messages_bare_list_takes_the_model_from_the_answers() -> None:
    body = [
        {"role": "User", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "model": "qwen2.5:7b"},
    ]

    parsed = parse_messages(encode(body))

    assert pairs(parsed) == [(Role.USER, "Hi"), (Role.ASSISTANT, "Hello")]
    assert parsed.model == "qwen2.5:7b"
    assert parsed.messages[1].model == "qwen2.5:7b"


def test_parse_messages_content_is_kept_verbatim() -> None:
    parsed = parse_messages(encode([{"role": "user", "content": "  spaced\n"}]))

    assert parsed.messages[0].content == "  spaced\n"


MESSAGE_ERRORS: list[tuple[str, bytes, str, str]] = [
    ("empty", b"", "content", "not valid JSON"),
    ("text", b"User: hi", "content", "not valid JSON"),
    ("scalar", b"3", "content", "Expected `object | array`"),
    ("no-messages-key", encode({"model": "x"}), "content", "missing required field `messages`"),
    ("messages-type", encode({"messages": {}}), "content.messages", "Expected `array`"),
    (
        "bad-role",
        encode({"messages": [{"role": "user", "content": "a"}, {"role": "bot"}]}),
        "content.messages[1].role",
        "'bot' is not one of",
    ),
    (
        "bare-bad-role",
        encode([{"role": "function", "content": "a"}]),
        "content[0].role",
        "not one of",
    ),
    ("missing-role", encode([{"content": "a"}]), "content[0]", "missing required field `role`"),
    ("content-type", encode([{"role": "user", "content": 5}]), "content[0].content", "Expected"),
    ("part-type", encode([{"role": "user", "content": [5]}]), "content[0].content[0]", "Expected"),
    ("model-type", encode({"messages": [], "model": 1}), "content.model", "Expected"),
    (
        "no-text",
        encode({"messages": [{"role": "user", "content": " "}]}),
        "content.messages",
        "no messages",
    ),
    ("empty-list", b"[]", "content", "no messages"),
    (
        "deep",
        b'[{"role": "user", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
        "content",
        "nested too deep",
    ),
    ("invalid-utf8", b'[{"role": "user", "content": "\xc3"}]', "content", "UTF-8"),
]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [case[1:] for case in MESSAGE_ERRORS],
    ids=[case[0] for case in MESSAGE_ERRORS],
)
def test_parse_messages_bad_input_raises_naming_the_field(data: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_messages(data)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "a"}] * 3}, "content.messages"),
        ([{"role": "user", "content": "a"}] * 3, "content"),
        ({"messages": [{"role": "user", "content": "x" * 11}]}, "content.messages[0].content"),
        ({"messages": [{"role": "user", "content": "a"}], "tags": ["a", "b", "c"]}, "content.tags"),
        (
            {"messages": [{"role": "user", "content": "a"}], "tags": ["a", "toolong"]},
            "content.tags[1]",
        ),
    ],
)
def test_parse_messages_over_a_limit_raises_payload_too_large(body: Any, field: str) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        parse_messages(encode(body), limits=SMALL)

    assert caught.value.field == field


# Detection and dispatch


ROW = {"id": "c1", "user_id": "u1", "chat": {"history": {"messages": {}, "currentId": None}}}
MESSAGES = [{"role": "user", "content": "hi"}]

DETECT: list[tuple[str, bytes, IntakeFormat]] = [
    ("row-array", encode([ROW]), IntakeFormat.OPENWEBUI),
    ("bare-chat", encode({"history": {}, "messages": MESSAGES}), IntakeFormat.OPENWEBUI),
    ("legacy-chat", encode({"models": ["m"], "messages": MESSAGES}), IntakeFormat.OPENWEBUI),
    ("wrapper", encode({"chat": {}}), IntakeFormat.OPENWEBUI),
    ("bare-chat-array", encode([{"messages": MESSAGES}]), IntakeFormat.OPENWEBUI),
    ("ndjson", encode(ROW) + b"\n" + encode(ROW) + b"\n", IntakeFormat.OPENWEBUI),
    ("empty-array", b"[]", IntakeFormat.OPENWEBUI),
    ("messages-object", encode({"messages": MESSAGES, "model": "m"}), IntakeFormat.MESSAGES),
    ("messages-list", b"\xef\xbb\xbf\n " + encode(MESSAGES), IntakeFormat.MESSAGES),
    ("text", b"User: hi\nAssistant: hello", IntakeFormat.TEXT),
    ("prose", "Grüße aus Köln".encode(), IntakeFormat.TEXT),
    ("json-scalar", b"42", IntakeFormat.TEXT),
    ("json-string", b'"User: hi"', IntakeFormat.TEXT),
    ("empty", b"", IntakeFormat.TEXT),
]


@pytest.mark.parametrize(
    ("data", "expected"), [case[1:] for case in DETECT], ids=[case[0] for case in DETECT]
)
def test_detect_format_shapes_map_to_formats(data: bytes, expected: IntakeFormat) -> None:
    assert detect_format(data) is expected


DETECT_ERRORS: list[tuple[str, bytes, type[InputError], str, str]] = [
    ("invalid-utf8", b"User: \xff", InputError, "content", "content is not valid UTF-8"),
    ("malformed", b'{"messages": [', InputError, "content", "not valid JSON"),
    ("malformed-array", b"[1, 2", InputError, "content", "not valid JSON"),
    ("other-object", encode({"prompt": "hi"}), UnsupportedFormatError, "content", "messages"),
    ("other-array", encode([{"x": 1}]), UnsupportedFormatError, "content[0]", "role"),
    ("scalar-array", b"[1]", UnsupportedFormatError, "content[0]", "objects"),
    (
        "ndjson-messages",
        encode({"messages": MESSAGES}) * 1 + b"\n{}",
        UnsupportedFormatError,
        "line 1",
        "NDJSON",
    ),
    ("deep", b"[" * 5000 + b"]" * 5000, InputError, "content", "nested too deep"),
]


@pytest.mark.parametrize(
    ("data", "kind", "field", "message"),
    [case[1:] for case in DETECT_ERRORS],
    ids=[case[0] for case in DETECT_ERRORS],
)
def test_detect_format_unreadable_content_raises_naming_the_field(
    data: bytes, kind: type[InputError], field: str, message: str
) -> None:
    with pytest.raises(kind, match=message) as caught:
        detect_format(data)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("name", "fmt", "count"),
    [
        ("openwebui-export.json", IntakeFormat.OPENWEBUI, 3),
        ("openwebui-chat.json", IntakeFormat.OPENWEBUI, 1),
        ("openwebui-export.ndjson", IntakeFormat.OPENWEBUI, 2),
        ("good-chat.txt", IntakeFormat.TEXT, 1),
        ("fail-chat.txt", IntakeFormat.TEXT, 1),
        ("quarantine-chat.txt", IntakeFormat.TEXT, 1),
        ("messages.json", IntakeFormat.MESSAGES, 1),
    ],
)
def test_parse_content_samples_are_detected_and_parsed(name: str, fmt: IntakeFormat, count: int) -> None:
    data = (SAMPLES / name).read_bytes()

    chats = parse_content(data)

    assert detect_format(data) is fmt
    assert len(chats) == count
    assert all(c.format is fmt and 3 <= len(c.messages) <= 16 for c in chats)


def test_parse_content_explicit_format_skips_detection() -> None:
    data = encode({"messages": MESSAGES})

    assert len(parse_content(data, IntakeFormat.OPENWEBUI)) == 1
    assert parse_content(data, IntakeFormat.MESSAGES)[0].format is IntakeFormat.MESSAGES
    with pytest.raises(InputError, match="not a chat"):
        parse_content(data, IntakeFormat.TEXT)


def test_parse_content_text_with_invalid_utf8_raises_on_content() -> None:
    with pytest.raises(InputError, match="UTF-8") as caught:
        parse_content(b"User: \xff", IntakeFormat.TEXT)

    assert caught.value.field == "content"


# Picking a chat


def chat(source_id: str | None) -> ParsedChat:
    return ParsedChat(
        format=IntakeFormat.OPENWEBUI,
        messages=(Message(Role.USER, "hi"),),
        source_id=source_id,
    )


def test_select_chat_single_chat_is_returned() -> None:
    only = chat("a")

    assert select_chat([only], None) is only
    assert select_chat([only], "a") is only


def test_select_chat_by_id_picks_that_chat() -> None:
    chats = [chat("a"), chat("b"), chat("c")]

    assert select_chat(chats, "b") is chats[1]


def test_select_chat_several_without_id_raises_on_chat_id_with_the_count() -> None:
    with pytest.raises(InputError, match=r"holds 3 chats.*a, b, c") as caught:
        select_chat([chat("a"), chat("b"), chat("c")], None)

    assert caught.value.field == "chat_id"


@pytest.mark.parametrize("chats", [[chat("a"), chat("b")], [chat("a")]])
def test_select_chat_unknown_id_raises_on_chat_id(chats: list[ParsedChat]) -> None:
    with pytest.raises(InputError, match="'z'") as caught:
        select_chat(chats, "z")

    assert caught.value.field == "chat_id"


def test_select_chat_lone_chat_without_id_ignores_chat_id() -> None:
    only = chat(None)

    assert select_chat([only], "whatever") is only


def test_select_chat_no_chats_raises_on_content() -> None:
    with pytest.raises(InputError) as caught:
        select_chat([], None)

    assert caught.value.field == "content"
