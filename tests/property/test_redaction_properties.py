"""Invariants of the PII redactor over arbitrary and adversarially assembled text."""

from __future__ import annotations

import ipaddress
import string

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import pii_corpus_templates as templates
from coop.node.intake.redaction import PiiType, Redaction, _names, _network, _numbers, redact
from coop.node.intake.redaction._names import NAME_GATES

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
    # the cues and shapes added for issue 10
    "I'm",
    "I’m",
    "Im",
    "this is",
    "Hi,",
    "here",
    "from",
    "Thanks,",
    "Best regards,\n",
    "\n-- ",
    "— ",
    ", head of finance",
    " (team lead)",
    "Name: ",
    "Full name - ",
    "Jane Doe",
    "van der",
    "R.",
    "is my cell",
    "ring me on",
    "Tel.",
    "0044 20 7946 0958",
    "0612345678",
    "612 345 678",
    "(11) 91234-5678",
    "de89 3704 0044 0532 0130 00",
    "DE89-3704-0044-0532-0130-00",
    "GB82.WEST.1234.5698.7654.32",
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
@example("Thanks, Jane 555-123-4567")  # a sign-off's name must end its line, placeholder or not
@example("I'm Ann Bea Cy Dee, head of finance")  # two cues, one name
@example("Hi, Jane jane@example.com here")
def test_redact_its_own_output_finds_nothing_new(text: str) -> None:
    once = redact(text)
    assert redact(once.text).hits == ()


@settings(deadline=None)
@given(unicode_text.filter(lambda t: not any(c in t for c in "0123456789@:")))
def test_redact_text_without_digits_at_or_colon_is_unchanged(text: str) -> None:
    # Name cues are the only rule that needs none of these characters; each needs a gate word.
    folded = text.casefold()
    assume(not any(gate in folded for gate in NAME_GATES))
    result = redact(text)
    assert result.text == text
    assert result.hits == ()


# --- the cheap tests never refuse what their pattern takes -------------------------
#
# Each speed-up runs a cheap test before a dear pattern and skips the pattern
# when the test fails: a test stricter than its pattern would lose hits.

# Cue words and shapes in every case, the spacing and punctuation around them.
CUE_PIECES = (
    *(piece for cue in _names._CUES for piece in cue.endings),
    *(w.capitalize() for cue in _names._CUES for w in cue.endings),
    *(w.upper() for cue in _names._CUES for w in cue.endings),
    "my", "My", "full", "I", "i", "It", "This", "good", "Good", "contact", "account", "Account",
    "thank", "Thank", "in", "a", "so", "talk", "Take", "speak", "kind", "Kind",
    "Jane", "Doe", "JANE", "Élodie", "jane", "Van", "van", "R.", "Dr.", "Sure", "Great",
    "head", "Head", "of", "CEO", "co-founder", "our", "senior", "vice", "product", "owner",
    "phone", "Tel", "cell", "number", "digits", "line", "office", "call", "text", "ring", "reach",
    "at", "on", "give", "me", "us", "buzz", "dial", "whatsapp", "'s", "is", "No.", "#",
    "ſ", "\u212a", "İ", "ı", "’", "—", "–",
)  # fmt: skip
CUE_GLUE = (" ", " ", "  ", "\t", "\n", ", ", ". ", "! ", ": ", "; ", " - ", "-", "(", " (", "", "'")
cue_soup = st.lists(
    st.one_of(st.sampled_from(CUE_PIECES), st.sampled_from(CUE_GLUE)), min_size=1, max_size=14
).map("".join)


@settings(deadline=None, max_examples=1500)
@given(cue_soup)
@example("Thanks, Jane")
@example("Hi ALL, Jane here")
@example("THIS IS Jane from accounting")
@example("Account   holder: Jane")
@example("Jane Doe, our senior vice co-founder")
def test_name_cheap_tests_pass_wherever_their_pattern_matches(text: str) -> None:
    if not text.isascii():  # the shape tests read ASCII turns only
        return
    raw = text.encode()
    shape = raw.translate(_names._SHAPE)[::-1]
    for cue, gate in zip(_names._CUES, _names._CUE_GATES, strict=True):
        if gate is None:
            continue
        for m in cue.pattern.finditer(text):
            assert gate.search(shape), cue.pattern.pattern
            assert _names._CUE_GATE.search(shape)
            if _names._take(text, m.end(), titlecase=cue.titlecase) is not None:
                assert _names._name_may_follow(text, shape, gate), cue.pattern.pattern
                assert _names._name_may_follow(text, shape, _names._CUE_GATE)
    if _names._ROLE.search(text):
        assert _names._ROLE_GATE.search(raw.translate(_names._LOWER))


@settings(deadline=None, max_examples=1500)
@given(cue_soup)
@example("call me back at")
@example("give us a buzz on")
@example("Jane's number")
def test_phone_cue_word_test_passes_wherever_the_phone_cue_matches(text: str) -> None:
    for end in range(len(text) + 1):
        if _numbers.PHONE_CUE.search(text, 0, end):
            assert _numbers._near_cue_word(text, 0, end), text[:end]


@settings(deadline=None)
@given(
    st.lists(
        st.integers(0, 999).map(str) | st.sampled_from(("00", "01", "007", "010")), min_size=4, max_size=4
    )
)
def test_octet_check_agrees_with_ipaddress(octets: list[str]) -> None:
    address = ".".join(octets)
    try:
        ipaddress.IPv4Address(address)
        valid = True
    except ValueError:
        valid = False
    assert _network._octets_valid(address) == valid


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


# --- names in the held-out phrasings (tests/pii_corpus_templates.py) -----------------------------

names = st.builds(
    lambda first, last, shape: shape.format(first=first, last=last, initial=last.split()[-1][0]),
    st.sampled_from(templates.FIRST_NAMES),
    st.sampled_from(templates.LAST_NAMES),
    st.sampled_from(("{first}", "{first} {last}", "{first} {initial}.", "{first[0]}. {last}")),
)


@settings(deadline=None)
@given(
    name=names,
    template=st.sampled_from(templates.SELF_ID_TEMPLATES + templates.SIGN_OFF_TEMPLATES),
    before=st.sampled_from(("", "Sorry for the delay.", "ok", "Quick one. See below.")),
)
def test_redact_a_name_in_any_held_out_phrasing_is_redacted(name: str, template: str, before: str) -> None:
    # A sign-off starts its own line, as in a message; the other phrasings follow a sentence.
    joiner = "\n\n" if template in templates.SIGN_OFF_TEMPLATES else " "
    text = (before + joiner if before else "") + template.replace("{n}", name)
    start = text.index(name)
    result = redact(text)
    assert any(
        h.type is PiiType.PERSON_NAME and h.start < start + len(name) and start < h.end for h in result.hits
    ), (text, result.hits)
    assert redact(result.text).hits == ()
