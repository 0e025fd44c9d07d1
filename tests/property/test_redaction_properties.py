"""Invariants of the PII redactor over arbitrary and adversarially assembled text."""

from __future__ import annotations

import string

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from coop.node.intake.redaction import Redaction, redact

# Pieces that put the rules next to each other: valid items of every type, their
# hard negatives, the cue words and the placeholders themselves.
FRAGMENTS = (
    "jane.doe@example.com",
    "a@b.co",
    "192.168.1.20",
    "10.0.0.1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "fe80::1",
    "123-45-6789",
    "123 45 6789",
    "123456789",
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    "+44 20 7946 0958",
    "+1 (555) 123-4567",
    "(555) 123-4567",
    "555-123-4567",
    "020 7946 0958",
    "06 12 34 56 78",
    "4111 1111 1111 1111",
    "4111111111111111",
    "378282246310005",
    "version",
    "Version",
    "v1.2.3",
    "2.10.4.1",
    "2024-01-15",
    "12:30:45",
    "SSN",
    "ssn",
    "social security",
    "phone",
    "tel",
    "call me",
    "call me at",
    "my name is",
    "Bob",
    "Ada Lovelace",
    "Dr.",
    "is",
    "number",
    "#",
    "0x",
    "bc1",
    "::",
    "[EMAIL]",
    "[SSN]",
    "[PHONE]",
    "[NAME]",
    "[CARD_NUMBER]",
    "1,234,567.89",
    "d670460b4b4aece5915caf5c68d12f560a9fe3e4",
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
    "NO9386011117947",
    "3782 822463 10005",
    "1-800-555-0199",
    "(0)20 7946 0958",
    "030/1234567",
    "I am called",
    "my name's",
    "+",
    "(",
)
SEPARATORS = ("", " ", "  ", "\n", ", ", ".", "-", ":", "@", "[", "]", "(", ")", "+", "/", "#")

assembled = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(SEPARATORS),
        st.text(alphabet="0123456789 .-", max_size=12),
        st.text(alphabet=string.ascii_letters, max_size=6),
    ),
    max_size=24,
).map("".join)
unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=400)
digit_runs = st.text(alphabet="0123456789", min_size=1, max_size=5_000)
number_soup = st.text(alphabet="0123456789 .-+()/:", max_size=2_000)
any_text = st.one_of(assembled, unicode_text, digit_runs, number_soup)


def assert_well_formed(source: str, result: Redaction) -> None:
    previous_end = 0
    for hit in result.hits:
        assert 0 <= previous_end <= hit.start < hit.end <= len(source)
        previous_end = hit.end
    # The output is the source with exactly the hit spans replaced, in order.
    rebuilt, pos = [], 0
    for hit in result.hits:
        rebuilt += (source[pos : hit.start], hit.type.placeholder)
        pos = hit.end
    rebuilt.append(source[pos:])
    assert result.text == "".join(rebuilt)
    assert result.total == sum(result.counts().values())


@settings(deadline=None, max_examples=400)
@given(any_text)
def test_redact_any_text_hits_are_sorted_disjoint_and_in_bounds(text: str) -> None:
    assert_well_formed(text, redact(text))


@settings(deadline=None, max_examples=600)
@given(any_text)
@example("123-45-6789 and 234567890")  # "[SSN]" must not become a cue for the next number
@example("call me V 1.2.3.4")
@example("+44 20 7946 0958 4111 1111 1111 1111")
@example("+44 20 7946 0958jane.doe@example.com")  # a phone group ran into the email
@example("jane.doe@example.com123-45-6789::::ffff:10.0.0.1")  # an IPv6 prefix before "[IPV4]"
@example("192.168.1.20 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2")  # an address inside a number island
def test_redact_its_own_output_finds_nothing_new(text: str) -> None:
    once = redact(text)
    assert redact(once.text).hits == ()


@settings(deadline=None)
@given(unicode_text.filter(lambda t: not any(c in t for c in "0123456789@:")))
def test_redact_text_without_digits_at_or_colon_is_unchanged(text: str) -> None:
    # Name cues are the only rule that needs none of these characters.
    assume("name" not in text.lower() and "call" not in text.lower())
    result = redact(text)
    assert result.text == text
    assert result.hits == ()


# --- planted items are found exactly where they were planted --------------------

FILLER = st.lists(
    st.sampled_from(("the", "report", "is", "ready", "thanks", "see", "below", "ok")),
    max_size=6,
).map(" ".join)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


visa_cards = st.text(alphabet="0123456789", min_size=14, max_size=14).map(
    lambda body: _luhn_complete("4" + body)
)


def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


german_ibans = st.text(alphabet="0123456789", min_size=18, max_size=18).map(lambda bban: _iban("DE", bban))
ssns = st.tuples(
    st.integers(1, 899).filter(lambda a: a != 666),
    st.integers(1, 99),
    st.integers(1, 9999),
).map(lambda t: f"{t[0]:03d}-{t[1]:02d}-{t[2]:04d}")
ipv4s = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
emails = st.tuples(
    st.text(alphabet=string.ascii_lowercase + string.digits + "._+", min_size=1, max_size=20)
    .map(lambda s: s.strip("."))
    .filter(lambda s: s and ".." not in s),
    st.sampled_from(("example.com", "mail.example.org", "uni.ac.uk")),
).map("@".join)

PLANTED = {
    "card_number": visa_cards,
    "iban": german_ibans,
    "ssn": ssns,
    "ipv4": ipv4s,
    "email": emails,
}


@settings(deadline=None)
@given(
    planted=st.sampled_from(sorted(PLANTED)).flatmap(lambda k: st.tuples(st.just(k), PLANTED[k])),
    before=FILLER,
    after=FILLER,
)
def test_redact_planted_item_is_the_only_hit(planted: tuple[str, str], before: str, after: str) -> None:
    kind, item = planted
    text = f"{before} {item} {after}"
    start = len(before) + 1
    result = redact(text)
    assert [(h.start, h.end, h.type.value) for h in result.hits] == [(start, start + len(item), kind)]
