"""The aipref reader never crashes, and its canonical output reads back to the same value."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import CC_SIGNALS, LEGACY_LABELS, AiUse, GovernanceError, Preference, parse_ai_use

_SF_ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789-_.*=,;:?()\"\\ @%!#$&'+/^`|~yn"))


@settings(deadline=None, max_examples=400)
@given(st.text(max_size=200))
def test_parse_ai_use_arbitrary_text_never_crashes(text: str) -> None:
    with contextlib.suppress(GovernanceError):
        parse_ai_use(text)


@settings(deadline=None, max_examples=400)
@given(st.text(alphabet=_SF_ALPHABET, max_size=80))
def test_parse_ai_use_structured_field_like_text_never_crashes(text: str) -> None:
    with contextlib.suppress(GovernanceError):
        parse_ai_use(text)


_PREFS = st.one_of(
    st.none(),
    st.builds(Preference, allow=st.just(True)),
    st.builds(
        Preference, allow=st.just(False), exceptions=st.one_of(st.none(), st.sampled_from(sorted(CC_SIGNALS)))
    ),
)


@given(_PREFS, _PREFS)
def test_ai_use_header_round_trips(train_ai: Preference | None, search: Preference | None) -> None:
    value = AiUse(train_ai=train_ai, search=search)
    parsed = parse_ai_use(value.to_header())
    assert parsed.value == value
    assert parsed.notices == ()


# Members as a member might type them: known, legacy and misspelt labels, values and parameters.
_LABELS = st.sampled_from(["train-ai", "search", *sorted(LEGACY_LABELS), "trian-ai", "serach", "foo"])
_VALUES = st.sampled_from(["y", "n", "maybe", "?1", '"n"'])
_PARAMS = st.sampled_from(
    ["", ";exceptions=cc-cr", ';exceptions="cc-cr-op"', ";exceptions=cc-rc", ";exeptions=cc-cr", ";why=1"]
)
_MEMBERS = st.builds(lambda label, value, param: f"{label}={value}{param}", _LABELS, _VALUES, _PARAMS)


@settings(deadline=None, max_examples=400)
@given(st.lists(_MEMBERS, max_size=4).map(", ".join))
def test_parse_ai_use_lenient_reading_of_own_valid_text_equals_strict(text: str) -> None:
    try:
        strict = parse_ai_use(text, strict=True)
    except GovernanceError:
        return
    assert parse_ai_use(text) == strict


@settings(deadline=None, max_examples=400)
@given(st.text(alphabet=_SF_ALPHABET, max_size=80))
def test_parse_ai_use_strict_structured_field_like_text_never_crashes_and_agrees(text: str) -> None:
    try:
        strict = parse_ai_use(text, strict=True)
    except GovernanceError:
        return
    assert parse_ai_use(text) == strict
