"""The AI-use preference reader: current labels, legacy labels, CC signals, errors."""

from __future__ import annotations

import pytest

from coop.governance import (
    AiPrefSyntaxError,
    AiUse,
    InvalidValueError,
    Preference,
    UsageLabel,
    parse_ai_use,
)

Y = Preference(allow=True)
N = Preference(allow=False)


@pytest.mark.parametrize(
    ("text", "expected", "header"),
    [
        pytest.param("train-ai=n", AiUse(train_ai=N), "train-ai=n", id="one-label"),
        pytest.param(
            "search=y, train-ai=n",
            AiUse(train_ai=N, search=Y),
            "search=y, train-ai=n",
            id="two-labels",
        ),
        pytest.param(
            "train-ai=n,search=y",
            AiUse(train_ai=N, search=Y),
            "search=y, train-ai=n",
            id="no-space",
        ),
        pytest.param(
            "train-ai=n;exceptions=cc-cr",
            AiUse(train_ai=Preference(allow=False, exceptions="cc-cr")),
            "train-ai=n;exceptions=cc-cr",
            id="cc-signal-token",
        ),
        pytest.param(
            'train-ai=n;exceptions="cc-cr-op"',
            AiUse(train_ai=Preference(allow=False, exceptions="cc-cr-op")),
            "train-ai=n;exceptions=cc-cr-op",
            id="cc-signal-string",
        ),
        pytest.param("", AiUse(), "", id="empty"),
        pytest.param("   ", AiUse(), "", id="blank"),
        pytest.param("train-ai=y, train-ai=n", AiUse(train_ai=N), "train-ai=n", id="later-duplicate-wins"),
    ],
)
def test_parse_ai_use_valid_text_reads_preferences(text: str, expected: AiUse, header: str) -> None:
    parsed = parse_ai_use(text)
    assert parsed.value == expected
    assert parsed.value.to_header() == header


@pytest.mark.parametrize(
    ("text", "expected", "notice"),
    [
        pytest.param("train-genai=n", AiUse(train_ai=N), "'train-genai'", id="train-genai"),
        pytest.param("ai-use=n", AiUse(train_ai=N), "'ai-use'", id="ai-use"),
        pytest.param("genai=y", AiUse(train_ai=Y), "'genai'", id="genai"),
        pytest.param("ai=n", AiUse(train_ai=N), "'ai'", id="ai"),
        pytest.param("tdm=n", AiUse(train_ai=N, search=N), "'tdm'", id="tdm-covers-both"),
        pytest.param(
            "tdm=n, search=y",
            AiUse(train_ai=N, search=Y),
            "'search' given explicitly",
            id="explicit-wins",
        ),
    ],
)
def test_parse_ai_use_legacy_label_maps_with_notice(text: str, expected: AiUse, notice: str) -> None:
    parsed = parse_ai_use(text)
    assert parsed.value == expected
    assert any(notice in line for line in parsed.notices), parsed.notices


@pytest.mark.parametrize(
    ("text", "expected", "notice"),
    [
        pytest.param("foo=y, train-ai=n", AiUse(train_ai=N), "unknown label 'foo'", id="unknown-label"),
        pytest.param("train-ai=n;why=1", AiUse(train_ai=N), "unknown parameter 'why'", id="unknown-param"),
        pytest.param(
            "train-ai=n;exceptions=cc-xx",
            AiUse(train_ai=N),
            "not a Creative Commons signal",
            id="bad-signal",
        ),
        pytest.param("train-ai=y;exceptions=cc-cr", AiUse(train_ai=Y), "has no meaning", id="signal-on-yes"),
        pytest.param("x=(1 2), search=n", AiUse(search=N), "unknown label 'x'", id="inner-list-on-unknown"),
    ],
)
def test_parse_ai_use_ignored_part_is_reported(text: str, expected: AiUse, notice: str) -> None:
    parsed = parse_ai_use(text)
    assert parsed.value == expected
    assert any(notice in line for line in parsed.notices), parsed.notices


@pytest.mark.parametrize(
    ("text", "position"),
    [
        pytest.param("train-ai=n,", 11, id="trailing-comma"),
        pytest.param("Train-ai=n", 0, id="uppercase-label"),
        pytest.param("train-ai=n search=y", 11, id="missing-comma"),
        pytest.param('train-ai="n', 11, id="unterminated-string"),
        pytest.param("train-ai=n;", 11, id="empty-parameter"),
        pytest.param("train-ai=ñ", 9, id="non-ascii"),
    ],
)
def test_parse_ai_use_syntax_error_names_position(text: str, position: int) -> None:
    with pytest.raises(AiPrefSyntaxError) as caught:
        parse_ai_use(text)
    assert caught.value.position == position
    assert caught.value.field == "ai_use"
    assert "character" in caught.value.message or "end" in caught.value.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("train-ai=maybe", "ai_use.train-ai", id="token"),
        pytest.param("search=1", "ai_use.search", id="integer"),
        pytest.param("train-ai", "ai_use.train-ai", id="bare-flag"),
        pytest.param('train-genai="n"', "ai_use.train-genai", id="legacy-string"),
    ],
)
def test_parse_ai_use_value_not_y_or_n_names_label(text: str, field: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_ai_use(text)
    assert caught.value.field == field


def test_ai_use_allows_reports_each_label() -> None:
    value = parse_ai_use("train-ai=n, search=y").value
    assert value.allows(UsageLabel.TRAIN_AI) is False
    assert value.allows(UsageLabel.SEARCH) is True
    assert parse_ai_use("search=y").value.allows(UsageLabel.TRAIN_AI) is None


def test_ai_use_describe_is_plain_words() -> None:
    text = parse_ai_use("train-ai=n;exceptions=cc-cr").value.describe()
    assert text == "Not allowed for training AI models, except under the Creative Commons signal cc-cr."


def test_parse_ai_use_over_length_limit_is_refused() -> None:
    with pytest.raises(AiPrefSyntaxError):
        parse_ai_use("train-ai=n, " * 200)


# -- a member's own input: strict -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        pytest.param(
            "trian-ai=n", "ai_use", "unknown AI-use label 'trian-ai': did you mean 'train-ai'?", id="swapped"
        ),
        pytest.param("train_ai=n", "ai_use", "did you mean 'train-ai'?", id="underscore"),
        pytest.param("trainai=n", "ai_use", "did you mean 'train-ai'?", id="no-hyphen"),
        pytest.param(
            "serach=n", "ai_use", "unknown AI-use label 'serach': did you mean 'search'?", id="search"
        ),
        pytest.param("search=y, tran-ai=n", "ai_use", "'tran-ai': did you mean 'train-ai'?", id="second"),
        pytest.param("train-gen-ai=n", "ai_use", "did you mean 'train-ai'?", id="current-label-first"),
        pytest.param("aiuse=n", "ai_use", "did you mean 'ai-use'?", id="legacy-typo"),
        pytest.param(
            "foo=n", "ai_use", "unknown AI-use label 'foo': the labels are train-ai, search", id="far"
        ),
        pytest.param(
            "train-ai=n;exeptions=cc-cr",
            "ai_use.train-ai",
            "unknown parameter 'exeptions' on 'train-ai': did you mean 'exceptions'?",
            id="parameter",
        ),
        pytest.param(
            "train-ai=n;why=1", "ai_use.train-ai", "the only parameter is 'exceptions'", id="far-parameter"
        ),
        pytest.param(
            "train-ai=n;exceptions=cc-rc",
            "ai_use.train-ai",
            "not a Creative Commons signal: did you mean 'cc-cr'?",
            id="signal",
        ),
    ],
)
def test_parse_ai_use_strict_unknown_name_is_refused_with_suggestion(
    text: str, field: str, message: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_ai_use(text, strict=True)
    assert caught.value.field == field
    assert message in caught.value.message, caught.value.message
    # Read as someone else's signal, the same text is only a notice.
    assert parse_ai_use(text).notices


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("train-genai=n", id="train-genai"),
        pytest.param("tdm=n, search=y", id="tdm"),
        pytest.param("ai=n;exceptions=cc-cr", id="ai-with-signal"),
        pytest.param("train-ai=y;exceptions=cc-cr", id="signal-on-yes"),
    ],
)
def test_parse_ai_use_strict_legacy_label_reads_as_lenient(text: str) -> None:
    assert parse_ai_use(text, strict=True) == parse_ai_use(text)


@pytest.mark.parametrize(
    "text",
    [
        "train-ai=n, train-ai=y",
        "search=n, search=y",
        "train-ai=n, search=y, train-ai=y",
        "ai=n, train-ai=y",
        "ai=n, genai=y",
    ],
)
def test_parse_ai_use_own_input_repeating_or_contradicting_a_label_is_refused(text: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_ai_use(text, strict=True)
    assert caught.value.field == "ai_use"
    parse_ai_use(text)  # someone else's signal: read as RFC 9651 and the draft say


def test_parse_ai_use_own_input_repeating_a_label_with_the_same_value_is_still_refused() -> None:
    with pytest.raises(InvalidValueError, match="more than once"):
        parse_ai_use("train-ai=n, train-ai=n", strict=True)
