"""Find personal data in chat text and replace it with typed placeholders.

Pure: text in, a ``Redaction`` out (the redacted text plus every hit as offsets
into the original, for the preview page).  Each type is found by a pattern
compiled once at import and then *validated* (checksums, ranges, issuer
prefixes), because a shape alone flags versions, dates and order numbers.

Invariants the tests hold us to: hits are sorted and never overlap; redacting
the output again finds nothing (placeholders never match, and no rule can be
unlocked by replacing a neighbour); the text is never otherwise changed.
"""

from __future__ import annotations

import bisect
import enum
import functools
import hashlib
import ipaddress
import operator
import re
from typing import Final

import msgspec

__all__ = ["Hit", "PiiType", "Redaction", "redact"]


class PiiType(enum.StrEnum):
    """The kinds of personal data the redactor finds; the value names it in counts and JSON."""

    EMAIL = "email"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    SSN = "ssn"  # US social security number
    IBAN = "iban"
    ETH_ADDRESS = "eth_address"
    BTC_ADDRESS = "btc_address"
    PHONE = "phone"
    CARD_NUMBER = "card_number"
    PERSON_NAME = "person_name"

    @property
    def placeholder(self) -> str:
        """The text that replaces a hit of this type, e.g. ``[EMAIL]``."""
        return "[NAME]" if self is PiiType.PERSON_NAME else f"[{self.name}]"


class Hit(msgspec.Struct, frozen=True):
    """One piece of personal data: ``text[start:end]`` of the original text."""

    start: int
    end: int
    type: PiiType


class Redaction(msgspec.Struct, frozen=True):
    """The redacted text and what was replaced in it (offsets into the original)."""

    text: str
    hits: tuple[Hit, ...] = ()

    @property
    def total(self) -> int:
        """How many pieces were replaced."""
        return len(self.hits)

    def counts(self) -> dict[str, int]:
        """Hits per type value, only types that occur, keys sorted."""
        counts: dict[str, int] = {}
        for hit in self.hits:
            counts[hit.type.value] = counts.get(hit.type.value, 0) + 1
        return dict(sorted(counts.items()))


# A candidate before overlap resolution: (start, end, type).
_Span = tuple[int, int, PiiType]

# Overlaps keep the longer hit; on equal length the more specific type (lower
# rank) wins: checksum-validated types first, cue- or shape-based ones last.
_RANK: Final[dict[PiiType, int]] = {
    PiiType.IBAN: 0,
    PiiType.CARD_NUMBER: 1,
    PiiType.BTC_ADDRESS: 2,
    PiiType.ETH_ADDRESS: 3,
    PiiType.EMAIL: 4,
    PiiType.IPV6: 5,
    PiiType.IPV4: 6,
    PiiType.SSN: 7,
    PiiType.PHONE: 8,
    PiiType.PERSON_NAME: 9,
}

# Boundaries.  Every pattern refuses to start right after "]" or to end right
# before "[", as it refuses a word character there: a placeholder's brackets
# then block exactly what the replaced text's own characters blocked, so
# redacting a neighbour can never unlock a new hit (idempotence).  Cue words
# also refuse "[" before and "]" after them, so "[SSN]" and "[PHONE]" are not cues.
_NUM_LEFT: Final = r"(?<![\w\]+\#/.,=-])"  # not inside a word, number, path or amount
_NUM_RIGHT: Final = r"(?![\w\[]|[.,/-][0-9\[])"  # and not continued by one

# Speed: the regex engine only scans quickly for a pattern that starts with a
# literal or a character class.  So one scan finds the "numeric islands" (digits
# with the separators numbers are written with) and every number-shaped rule
# runs only around an island with enough digits; the other rules wait for a
# literal gate ("@", "0x", "bc1", ":hex:", a cue word).
# An island opens at a digit not glued to a letter or digit (so the digit runs
# inside hashes and addresses cost nothing), or at an IBAN's check digits.
_ISLAND: Final = re.compile(r"[0-9](?:(?<![^\W_][0-9])|(?<=[A-Z]{2}[0-9]))[0-9 ()./+-]*+")
_NOT_DIGITS: Final = str.maketrans("", "", "0123456789")
_ASCII_DIGIT: Final = re.compile(r"[0-9]")
_UPPERCASE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


# --- email -------------------------------------------------------------------

# Found from each "@": the domain forwards, the local part (at most 64
# characters, RFC 5321) backwards.
_EMAIL_ATOM: Final = r"[A-Za-z0-9!\#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LOCAL: Final = re.compile(rf"(?<![\w.!\#$%&'*+/=?^`{{|}}~\]-]){_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*\Z")
_EMAIL_DOMAIN: Final = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w\[-]|\.[A-Za-z0-9\[])"
)


def _emails(text: str, out: list[_Span]) -> None:
    at = text.find("@")
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at)
        if domain is not None:
            local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
            if local is not None and domain.end() - local.start() <= 254:
                out.append((local.start(), domain.end(), PiiType.EMAIL))
        at = text.find("@", at + 1)


# --- IPv4 --------------------------------------------------------------------

_IPV4: Final = re.compile(r"(?<![\w\].])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w\[]|\.[0-9\[])")
# "version 2.10.4.1" is a version, not an address.  The cue must stand alone
# ("a@b.version" is not one) so that replacing a neighbour cannot remove it.
_VERSION_CUE: Final = re.compile(
    r"(?i)(?<![\w.@\[\]-])(?:version|ver|release|build|rev|revision|firmware|fw)"
    r"\.?[ \t]*[:\#]?[ \t]*\Z"
)


def _ipv4s(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    for m in _IPV4.finditer(text, lo, hi):
        try:
            ipaddress.IPv4Address(m[0])  # each octet 0-255, no leading zeros
        except ValueError:
            continue
        if not _VERSION_CUE.search(text, max(0, m.start() - 16), m.start()):
            out.append((m.start(), m.end(), PiiType.IPV4))


# --- IPv6 --------------------------------------------------------------------

# Two colons at most five characters apart open a candidate; ipaddress decides
# (times such as 12:30:45 and MAC addresses fail it: no "::", fewer than 8 groups).
_IPV6_GATE: Final = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6: Final = re.compile(
    r"""
    (?<![\w:.\]])
    [0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}
    (?:\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?  # an embedded IPv4 tail: ::ffff:10.0.0.1
    (?![\w\[:]|\.[0-9A-Fa-f\[])  # only the whole run: a prefix could be valid alone
    """,
    re.VERBOSE,
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _ipv6s(text: str, out: list[_Span]) -> None:
    pos = 0
    while gate := _IPV6_GATE.search(text, pos):
        start = gate.start()
        floor = max(0, start - 4)
        while start > floor and text[start - 1] in _HEX:
            start -= 1
        m = _IPV6.match(text, start)
        if m is None:
            pos = gate.start() + 1
            continue
        pos = m.end()
        candidate, end = m[0], m.end()
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate, end = candidate[:-1], end - 1  # a colon that ends a sentence
        # Hex words joined by "::" are C++ scopes ("cb::add"), not addresses.
        if candidate.count(":") < 7 and not _ASCII_DIGIT.search(candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append((start, end, PiiType.IPV6))


# --- US SSN ------------------------------------------------------------------

_SSN: Final = re.compile(
    rf"{_NUM_LEFT}([0-9]{{3}})([ -])([0-9]{{2}})\2([0-9]{{4}})(?![\w\[]|[.,/-][0-9\[]|\2[0-9\[])"
)


def _valid_ssn(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    for m in _SSN.finditer(text, lo, hi):
        if _valid_ssn(m[1], m[3], m[4]):
            out.append((m.start(), m.end(), PiiType.SSN))


# --- numbers that only a cue word makes personal --------------------------------

# A bare number is an SSN or a phone number only right after its cue, joined by
# a few filler words: "SSN: 123456789", "my mobile number is 0612345678".
_CUED_NUMBER: Final = re.compile(
    rf"{_NUM_LEFT}\+?(?:\([0-9]{{1,5}}\)[ .-]?)?[0-9]++(?:[ .-][0-9]++)*+{_NUM_RIGHT}(?![ ]\[)"
)
_FILLERS: Final = r"(?:[ \t]*(?i:is|was|number|no\.?|nr\.?|num|\#|:|=|-))*+[ \t]*\Z"
_SSN_CUE: Final = re.compile(r"(?i:(?<![\w\[\]])(?:ssn|social[ \t]+security)(?![\w\[\]]))" + _FILLERS)
_PHONE_CUE: Final = re.compile(
    r"(?i:(?<![\w\[\]])(?:phone|telephone|tel|mobile|cell|cellphone|whatsapp|fax"
    r"|(?:call|text|reach)[ \t]+me[ \t]+(?:at|on))(?![\w\[\]]))" + _FILLERS
)
_CUE_REACH: Final = 48  # how far back a cue and its fillers may start
# Some word of every cue above, to skip the search in texts that have none.
_CUE_WORDS: Final = (
    "ssn", "social", "phone", "tel", "mobile", "cell", "whatsapp", "fax", "call", "text", "reach",
)  # fmt: skip
_DATE_LIKE: Final = re.compile(
    r"[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{2,4}"
)


def _cued_numbers(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    for m in _CUED_NUMBER.finditer(text, lo, hi):
        start, number = m.start(), m[0]
        reach = max(0, start - _CUE_REACH)
        if (
            len(number) == 9
            and number.isdigit()
            and _valid_ssn(number[:3], number[3:5], number[5:])
            and _SSN_CUE.search(text, reach, start)
        ):
            out.append((start, m.end(), PiiType.SSN))
            continue
        digits = len(number) - len(number.translate(_NOT_DIGITS))
        if 7 <= digits <= 15 and not _DATE_LIKE.fullmatch(number) and _PHONE_CUE.search(text, reach, start):
            out.append((start, m.end(), PiiType.PHONE))


# --- IBAN --------------------------------------------------------------------

# Lengths from the SWIFT IBAN registry: every SEPA country and the common others.
_IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Compact, or printed in groups of four separated by single spaces.  The country
# code is upper case, as IBANs are printed and pasted.
_IBAN: Final = re.compile(
    r"""
    (?<![\w\]])
    [A-Z]{2}[0-9]{2}
    (?:[A-Za-z0-9]{11,30}|(?:[ ][A-Za-z0-9]{4}){2,7}(?:[ ][A-Za-z0-9]{1,3})?)
    (?![\w\[])
    """,
    re.VERBOSE,
)
# A=10 ... Z=35, for the mod-97 check (ISO 13616).
_IBAN_LETTERS: Final = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})


def _iban_at(text: str, start: int) -> _Span | None:
    m = _IBAN.match(text, start)
    if m is None:
        return None
    groups = m[0].upper().split(" ")
    length = _IBAN_LENGTHS.get(groups[0][:2])
    if length is None:
        return None
    # In the spaced form the pattern may run on into the next words
    # ("... 0130 00 AB12"): cut it back to the country's length at a group end.
    size, end = 0, start - 1
    for group in groups:
        size, end = size + len(group), end + 1 + len(group)
        if size >= length:
            break
    if size != length:
        return None
    compact = "".join(groups)[:length]
    rearranged = (compact[4:] + compact[:4]).translate(_IBAN_LETTERS)
    return (start, end, PiiType.IBAN) if int(rearranged) % 97 == 1 else None


# --- payment cards -----------------------------------------------------------

_CARD: Final = re.compile(
    rf"""{_NUM_LEFT}
    (?:
        [0-9]{{13,19}}(?![.,/-][0-9\[])
      | [0-9]{{4}}(?P<s>[ -])[0-9]{{4}}(?P=s)[0-9]{{4}}(?P=s)[0-9]{{1,4}}
        (?:(?P=s)[0-9]{{1,3}})?
      | [0-9]{{4}}(?P<t>[ -])[0-9]{{6}}(?P=t)[0-9]{{4,5}}   # Amex / Diners: 4-6-5, 4-6-4
    )
    (?![\w\[])
    """,
    re.VERBOSE,
)
_MAESTRO: Final = frozenset({5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763})


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _plausible_issuer(digits: str) -> bool:
    """Whether the prefix and length belong to a card network (IIN ranges)."""
    n = len(digits)
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if p2 == 36 or 300 <= p3 <= 305 or p2 in (38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 == 62 or 2200 <= p4 <= 2204:  # UnionPay, Mir
        return 16 <= n <= 19
    return p4 in _MAESTRO or p2 in (50, 56, 57, 58, 63, 67)  # Maestro


def _valid_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _plausible_issuer(digits) and _luhn(digits)


def _cards(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    pos = lo
    while m := _CARD.search(text, pos, hi):
        candidate, end, sep = m[0], m.end(), m["s"]
        digits = candidate.replace(" ", "").replace("-", "")
        if sep and len(digits) > 16 and not _valid_card(digits):
            # "4111 1111 1111 1111 123": the last group may be a CVV, not the card.
            candidate = candidate[: candidate.rindex(sep)]
            end = m.start() + len(candidate)
            digits = candidate.replace(sep, "")
        if _valid_card(digits):
            out.append((m.start(), end, PiiType.CARD_NUMBER))
            pos = end
        else:
            # Look again from the next group, which a plain non-overlapping
            # scan would skip: "1234 4111 1111 1111 1111" holds a card.
            pos = m.start() + 1


# --- phone numbers -----------------------------------------------------------

# International: "+CC" then up to five groups; possessive repeats keep long
# digit runs linear.
_PHONE_INTL: Final = re.compile(
    r"""
    (?<![\w\]+\#/.,=-])
    \+[1-9][0-9]*+
    (?:[ .-]?\([0-9]{1,5}\)|[ .-][0-9]++|(?<=\))[0-9]++){0,5}+
    (?![\w\[]|[ .-]\[)  # a group would continue into a placeholder
    """,
    re.VERBOSE,
)
# North America: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199.
_PHONE_NANP: Final = re.compile(
    rf"""{_NUM_LEFT}
    (?:1[ .-])?
    (?:\([2-9][0-9]{{2}}\)[ ]?[0-9]{{3}}[ .-][0-9]{{4}}
      |[2-9][0-9]{{2}}([ .-])[0-9]{{3}}\1[0-9]{{4}})
    {_NUM_RIGHT}
    """,
    re.VERBOSE,
)
# European national forms start with the trunk 0 (never "00", the international
# prefix) and keep one separator: 020 7946 0958, 06 12 34 56 78, 030/1234567,
# (0)20 7946 0958.
_PHONE_NATIONAL: Final = re.compile(
    rf"""{_NUM_LEFT}(?<![0-9\]][ ])  # not the tail of a longer grouped number
    (?:\(0(?:[1-9][0-9]{{0,3}})?\)[ ]?[0-9]{{2,8}}(?:[ -][0-9]{{2,8}}){{0,3}}+
      |0[1-9][0-9]{{0,3}}(?P<s>[ ./-])[0-9]{{2,8}}(?:(?P=s)[0-9]{{2,8}}){{0,3}}+)
    (?![\w\[]|[ .,/-][0-9\[])
    """,
    re.VERBOSE,
)
_DIGIT_RUN: Final = re.compile(r"[0-9]+")
_DOTTED_QUAD: Final = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")  # an address, never a phone


def _international_phones(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    for m in _PHONE_INTL.finditer(text, lo, hi):
        # E.164 caps a number at 15 digits: drop trailing groups beyond that.
        count, end = 0, m.start()
        for run in _DIGIT_RUN.finditer(m[0]):
            if count + len(run[0]) > 15:
                break
            count, end = count + len(run[0]), m.start() + run.end()
        if end < m.end() and text[end] == ")":
            end += 1
        if count >= 8 and text.count(".", m.start(), end) != 1:  # one dot: an amount
            out.append((m.start(), end, PiiType.PHONE))


def _national_phones(text: str, lo: int, hi: int, out: list[_Span]) -> None:
    for m in _PHONE_NANP.finditer(text, lo, hi):
        out.append((m.start(), m.end(), PiiType.PHONE))
    for m in _PHONE_NATIONAL.finditer(text, lo, hi):
        digits = len(m[0]) - len(m[0].translate(_NOT_DIGITS))
        if 9 <= digits <= 12 and not _DOTTED_QUAD.fullmatch(m[0]):
            out.append((m.start(), m.end(), PiiType.PHONE))


# --- crypto addresses --------------------------------------------------------

_ETH: Final = re.compile(r"0[xX](?<![\w\]]..)[0-9a-fA-F]{40}(?![\w\[])")

_B58_INDEX: Final = {c: i for i, c in enumerate("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")}
_B58_LETTERS: Final = frozenset(_B58_INDEX) - frozenset("123456789")
_BTC_LEGACY: Final = re.compile(r"[13](?<![\w\]].)[1-9A-HJ-NP-Za-km-z]{25,34}(?![\w\[])")

_BECH32_INDEX: Final = {c: i for i, c in enumerate("qpzry9x8gf2tvdw0s3jn54khce6mua7l")}
_BECH32_CONST: Final = 1  # BIP-173, witness version 0
_BECH32M_CONST: Final = 0x2BC830A3  # BIP-350, witness versions 1-16
_BECH32_HRP: Final = [3, 3, 0, 2, 3]  # "bc" expanded: high bits, 0, low bits
# The BCH generator folded in, one entry per value of the five bits shifted out.
_BECH32_GENERATOR: Final = tuple(
    functools.reduce(
        operator.xor,
        (g for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3))
         if top >> i & 1),
        0,
    )
    for top in range(32)
)  # fmt: skip
_BTC_BECH32: Final = re.compile(
    r"(?<![\w\]])(?:bc1[02-9ac-hj-np-z]{6,87}|BC1[02-9AC-HJ-NP-Z]{6,87})(?![\w\[])"
)


def _base58check(address: str) -> bool:
    """A P2PKH/P2SH address: 25 bytes, version 0x00 or 0x05, double-SHA-256 checksum."""
    number = 0
    for ch in address:
        number = number * 58 + _B58_INDEX[ch]
    leading_zeros = len(address) - len(address.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\x00" * leading_zeros + body
    if len(raw) != 25 or raw[0] not in (0x00, 0x05):
        return False
    return raw[-4:] == hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4]


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ value) ^ _BECH32_GENERATOR[chk >> 25]
    return chk


def _segwit_address(address: str) -> bool:
    """A ``bc1`` address whose checksum matches its witness version (BIP-173/350)."""
    if len(address) > 90:
        return False
    data = [_BECH32_INDEX[c] for c in address[3:].lower()]
    version = data[0]
    expected = _BECH32_CONST if version == 0 else _BECH32M_CONST
    if version > 16 or _bech32_polymod(_BECH32_HRP + data) != expected:
        return False
    # Regroup the 5-bit program into bytes; leftover bits must be zero padding.
    acc, bits, program = 0, 0, bytearray()
    for value in data[1:-6]:
        acc, bits = (acc << 5) | value, bits + 5
        if bits >= 8:
            bits -= 8
            program.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc << (8 - bits)) & 0xFF:
        return False
    if not 2 <= len(program) <= 40:
        return False
    return version != 0 or len(program) in (20, 32)


def _btc_legacy(text: str, start: int, end: int, out: list[_Span]) -> None:
    """Addresses whose leading 1 or 3 lies in the island ``text[start:end]``.

    Such a digit follows no word character, so it always lies in some island.
    The window runs past the island by one longest address and one character,
    so no address is cut short by the window's end.
    """
    limit = min(len(text), end + 36)
    while (m := _BTC_LEGACY.search(text, start, limit)) and m.start() < end:
        if _base58check(m[0]):
            out.append((m.start(), m.end(), PiiType.BTC_ADDRESS))
        start = m.end()  # inside the run every start follows a word character


def _cryptos(text: str, out: list[_Span]) -> None:
    if "0x" in text or "0X" in text:
        for m in _ETH.finditer(text):
            out.append((m.start(), m.end(), PiiType.ETH_ADDRESS))
    if "bc1" in text or "BC1" in text:
        for m in _BTC_BECH32.finditer(text):
            if _segwit_address(m[0]):
                out.append((m.start(), m.end(), PiiType.BTC_ADDRESS))


# --- numbers, driven by the islands ------------------------------------------------


def _numbers(text: str, folded: str, out: list[_Span]) -> None:
    """The number-shaped rules, run around each island that could hold one."""
    size, cued = len(text), None
    for island in _ISLAND.finditer(text):
        start, end, chunk = island.start(), island.end(), island[0]
        # A legacy Bitcoin address's first letter ends the island it starts in
        # (or the address is 26 digits and more, all in the island).
        if ("1" in chunk or "3" in chunk) and (
            (end < size and text[end] in _B58_LETTERS) or len(chunk) >= 26
        ):
            _btc_legacy(text, start, end, out)
        # An IBAN's check digits always open an island, right after the country.
        if start > 1 and text[start - 1] in _UPPERCASE:
            iban = _iban_at(text, start - 2)
            if iban is not None:
                out.append(iban)
        if len(chunk) < 7:  # "1.2.3.4" is the shortest number any rule takes
            continue
        digits = len(chunk) - len(chunk.translate(_NOT_DIGITS))
        if digits < 4:
            continue
        # Two characters either side: the "+" or "(" that opens a phone number,
        # and what the patterns' boundary look-arounds inspect.
        lo, hi = (start - 2 if start > 2 else 0), (end + 2 if end + 2 < size else size)
        # Each rule needs at least so many digits: the island holds them all.
        if chunk.count(".") >= 3:
            _ipv4s(text, lo, hi, out)
        if digits >= 8 and text.find("+", lo, end) >= 0:
            _international_phones(text, lo, hi, out)
        if digits >= 9:
            _ssns(text, lo, hi, out)
            _national_phones(text, lo, hi, out)
        if digits >= 13:
            _cards(text, lo, hi, out)
        if digits >= 7:
            if cued is None:
                cued = any(map(folded.__contains__, _CUE_WORDS))
            if cued:
                _cued_numbers(text, lo, hi, out)


# --- person names ------------------------------------------------------------

# Each cue pattern opens with a character class, so the engine scans for it
# quickly; each runs only when its key word is in the text at all.
_NAME_CUES: Final = (
    ("name", re.compile(r"[Mm](?<![\w\[\]].)(?i:y[ \t]+name(?:[ \t]+is|['’]s))[ \t]+")),
    ("call", re.compile(r"[Cc](?<![\w\[\]].)(?i:all[ \t]+me)[ \t]+")),
    ("call", re.compile(r"[Ii](?<![\w\[\]].)(?i:(?:[ \t]+am|['’]m)[ \t]+called)[ \t]+")),
)
_NAME_WORD: Final = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w@\[])")
_NAME_GAP: Final = re.compile(r"[ \t]+")
_TITLES: Final = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir"})
# Capitalised words that follow a cue without being a name ("call me Tomorrow").
# The cue words of other rules are here too: a name hit must never swallow the
# "version" that keeps "version 1.2.3.4" from being read as an address.
_NOT_NAMES: Final = frozenset((
    "a", "an", "the", "i", "i'm", "im", "not", "no", "yes", "ok", "okay", "maybe", "please",
    "asap", "now", "later", "soon", "today", "tonight", "tomorrow", "yesterday", "anytime",
    "any", "anything", "back", "again", "if", "when", "whenever", "at", "on", "in", "by",
    "for", "to", "from", "and", "or", "but", "so", "just", "only", "also", "here", "there",
    "what", "who", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "weekend", "morning", "evening", "afternoon", "night", "version", "ver",
    "release", "build", "rev", "revision", "firmware", "fw", "order", "invoice", "isbn",
    "ssn", "phone", "tel", "mobile", "cell", "number",
))  # fmt: skip


def _names(text: str, folded: str, out: list[_Span]) -> None:
    cues = [m for key, pattern in _NAME_CUES if key in folded for m in pattern.finditer(text)]
    for cue in cues:
        words: list[re.Match[str]] = []
        pos, title_allowed = cue.end(), True
        while len(words) < 3:
            word = _NAME_WORD.match(text, pos)
            if word is None or not word[0][0].isupper():
                break
            lowered = word[0].casefold()
            if title_allowed and lowered in _TITLES:  # "Dr. Ada Lovelace": keep the title
                pos = word.end() + text.startswith(".", word.end())
            elif lowered in _NOT_NAMES:
                break
            else:
                words.append(word)
                pos = word.end()
            title_allowed = False
            gap = _NAME_GAP.match(text, pos)
            if gap is None:
                break
            pos = gap.end()
        if words:
            out.append((words[0].start(), words[-1].end(), PiiType.PERSON_NAME))


# --- the redactor ------------------------------------------------------------


def _resolve(spans: list[_Span]) -> list[_Span]:
    """Non-overlapping spans sorted by start: longer first, then the more specific type."""
    starts: list[int] = []
    kept: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s[0] - s[1], _RANK[s[2]], s[0])):
        start, end, _ = span
        i = bisect.bisect_right(starts, start)
        if (i and kept[i - 1][1] > start) or (i < len(kept) and kept[i][0] < end):
            continue
        starts.insert(i, start)
        kept.insert(i, span)
    return kept


def redact(text: str) -> Redaction:
    """Replace every piece of personal data in ``text`` with its type's placeholder."""
    spans: list[_Span] = []
    if "@" in text:
        _emails(text, spans)
    if ":" in text:
        _ipv6s(text, spans)
    # casefold, not lower: the cue patterns match case-insensitively, and "ſ"
    # (long s) matches "s" there; the gates must never be stricter.
    folded = text.casefold()
    if _ASCII_DIGIT.search(text):
        _numbers(text, folded, spans)
        _cryptos(text, spans)
    if "name" in folded or "call" in folded:
        _names(text, folded, spans)
    if not spans:
        return Redaction(text=text)
    kept = _resolve(spans)
    parts: list[str] = []
    pos = 0
    for start, end, kind in kept:
        parts += (text[pos:start], kind.placeholder)
        pos = end
    parts.append(text[pos:])
    return Redaction(
        text="".join(parts),
        hits=tuple(Hit(start=start, end=end, type=kind) for start, end, kind in kept),
    )
