"""The aipref reader never crashes, and its canonical output reads back to the same value."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import CC_SIGNALS, AiUse, GovernanceError, Preference, parse_ai_use

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
