"""Bank and payment identifiers: IBANs, payment cards, Bitcoin and Ethereum addresses.

Each is found by its shape and kept only when its checksum holds (ISO 13616
mod 97 and the country's BBAN structure, Luhn and an issuer range,
Base58Check, bech32/bech32m).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
from typing import Final

from stdnum import numdb

from coop.node.intake.redaction._model import NUM_LEFT, PiiType, Span

__all__ = ["B58_LETTERS", "btc_legacy", "cards", "cryptos", "iban_at"]

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

# A=10 ... Z=35, for the mod-97 check (ISO 13616).
_IBAN_LETTERS: Final = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})


# Compact, or in groups of four joined by one separator: a space (or two),
# a dash or a dot.  Upper or lower case: people retype IBANs as they like.
_IBAN: Final = re.compile(
    r"""
    (?<![\w\]])
    [A-Za-z]{2}[0-9]{2}
    (?:[A-Za-z0-9]{11,30}
      |(?P<sep>[ ]{1,2}|[.-])[A-Za-z0-9]{4}(?:(?P=sep)[A-Za-z0-9]{4}){1,6}(?:(?P=sep)[A-Za-z0-9]{1,3})?)
    (?![\w\[])
    """,
    re.VERBOSE,
)


def iban_at(text: str, start: int) -> Span | None:
    """The IBAN that starts at ``start``, if one does."""
    m = _IBAN.match(text, start)
    if m is None:
        return None
    sep = m["sep"]
    groups = m[0].upper().split(sep) if sep else [m[0].upper()]
    length = _IBAN_LENGTHS.get(groups[0][:2])
    if length is None:
        return None
    # In the grouped form the pattern may run on into the next words
    # ("... 0130 00 AB12"): cut it back to the country's length at a group end.
    step = len(sep) if sep else 0
    size, end = 0, start - step
    for group in groups:
        size, end = size + len(group), end + step + len(group)
        if size >= length:
            break
    if size != length:
        return None
    compact = "".join(groups)[:length]
    rearranged = (compact[4:] + compact[:4]).translate(_IBAN_LETTERS)
    if int(rearranged) % 97 != 1:
        return None
    # The registry's structure of the national part (digits, letters, either):
    # a checksum alone passes one random string in 97.
    bban = _bban_structure(compact[:2])
    return (start, end, PiiType.IBAN) if bban is not None and bban.fullmatch(compact, 4) else None


# python-stdnum's copy of the SWIFT IBAN registry: "DE" -> "18!n", "GB" -> "4!a14!n".
_IBAN_REGISTRY: Final = numdb.get("iban")
_STRUCTURE_PART: Final = re.compile(r"([1-9][0-9]*)!([nac])")
_STRUCTURE_CLASS: Final = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]"}


@functools.cache
def _bban_structure(country: str) -> re.Pattern[str] | None:
    """The national part's structure as a pattern, compiled once per country."""
    info = _IBAN_REGISTRY.info(country)
    structure = info[0][1].get("bban") if info else None
    if not structure:
        return None
    return re.compile(_STRUCTURE_PART.sub(lambda m: f"{_STRUCTURE_CLASS[m[2]]}{{{m[1]}}}", structure))


# --- payment cards -----------------------------------------------------------

_CARD: Final = re.compile(
    rf"""{NUM_LEFT}
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


# Each digit doubled, its digits summed: what Luhn adds for every second digit from the right.
_LUHN_DOUBLED: Final = str.maketrans("0123456789", "0246813579")


def _luhn(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2].translate(_LUHN_DOUBLED)))
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


def cards(text: str, lo: int, hi: int, out: list[Span]) -> None:
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


# --- crypto addresses --------------------------------------------------------

_ETH: Final = re.compile(r"0[xX](?<![\w\]]..)[0-9a-fA-F]{40}(?![\w\[])")

_B58_INDEX: Final = {c: i for i, c in enumerate("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")}
B58_LETTERS: Final = frozenset(_B58_INDEX) - frozenset("123456789")
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


def btc_legacy(text: str, start: int, end: int, out: list[Span]) -> None:
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


def cryptos(text: str, out: list[Span]) -> None:
    if "0x" in text or "0X" in text:
        for m in _ETH.finditer(text):
            out.append((m.start(), m.end(), PiiType.ETH_ADDRESS))
    if "bc1" in text or "BC1" in text:
        for m in _BTC_BECH32.finditer(text):
            if _segwit_address(m[0]):
                out.append((m.start(), m.end(), PiiType.BTC_ADDRESS))
