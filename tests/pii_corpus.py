"""A labelled chat corpus from the held-out templates in ``pii_corpus_templates``.

Seeded: the same seed gives the same messages.  Each message carries the spans
of the personal data planted in it, so a redactor's hits can be scored per type
(``score``).  Used by the unit test that holds the recall and precision floors
and by ``bench/bench_redaction.py``.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import random
import string
import uuid
from collections.abc import Callable, Sequence

import msgspec

import pii_corpus_templates as t
from coop.node.intake.redaction import PiiType

__all__ = ["Message", "Planted", "Score", "Segment", "generate", "score"]


class Planted(msgspec.Struct, frozen=True):
    start: int
    end: int
    type: PiiType


class Message(msgspec.Struct, frozen=True):
    text: str
    planted: tuple[Planted, ...]


class Segment(enum.Enum):
    PII = "pii"
    NEGATIVE = "negative"
    PLAIN = "plain"


# --- items -------------------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def person_name(rng: random.Random) -> str:
    """A name in one of the shapes people write; now and then all lower case, as typed in chat."""
    first, middle = rng.sample(t.FIRST_NAMES, 2)
    name = rng.choice(t.NAME_SHAPES).format(
        first=first, middle=middle, last=rng.choice(t.LAST_NAMES), initial=rng.choice("ABCDEFGHJKLMNPRSTW")
    )
    return name.lower() if rng.random() < 0.04 else name


def phone(rng: random.Random) -> str:
    country = rng.choice(sorted(t.PHONE_FORMATS))
    shape = rng.choice(t.PHONE_FORMATS[country])
    return "".join(rng.choice(string.digits) if c == "N" else c for c in shape)


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(t.IBAN_STRUCTURES))
    structure = t.IBAN_STRUCTURES[country]
    bban, count = "", ""
    for ch in structure:
        if ch.isdigit():
            count += ch
            continue
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[ch]
        bban += "".join(rng.choice(alphabet) for _ in range(int(count)))
        count = ""
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    compact = f"{country}{check:02d}{bban}"
    spacing = rng.choice(t.IBAN_SPACINGS)
    separator = spacing.replace("lower", "")
    written = separator.join(compact[i : i + 4] for i in range(0, len(compact), 4)) if separator else compact
    return written.lower() if "lower" in spacing else written


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(
        (("4", 16), ("53", 16), ("2720", 16), ("37", 15), ("6011", 16), (f"35{rng.randint(28, 89)}", 16))
    )
    number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    style = rng.random()
    if length == 16 and style < 0.4:
        return " ".join(number[i : i + 4] for i in range(0, 16, 4))
    if length == 16 and style < 0.55:
        return "-".join(number[i : i + 4] for i in range(0, 16, 4))
    if length == 15 and style < 0.5:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    return number


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(("-", "-", "-", " ", ""))
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def email(rng: random.Random) -> str:
    first = rng.choice(t.FIRST_NAMES).encode("ascii", "ignore").decode().lower() or "user"
    last = (
        rng.choice(t.LAST_NAMES).encode("ascii", "ignore").decode().lower().replace(" ", "").replace("'", "")
    )
    local = rng.choice(
        (f"{first}.{last}", f"{first[0]}{last}", f"{first}_{rng.randint(1, 999)}", f"{last}+spam")
    )
    return f"{local}@{rng.choice(('example.net', 'post.example.de', 'mail.example.fr', 'example.co.uk'))}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    address = ipaddress.IPv6Address(
        (rng.choice((0x20010DB8, 0x2A02_0810, 0x2600_1F18)) << 96) + rng.getrandbits(72)
    )
    return address.compressed


def eth(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _b58check(payload: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, out = int.from_bytes(raw, "big"), ""
    while number:
        number, rem = divmod(number, 58)
        out = alphabet[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def btc(rng: random.Random) -> str:
    return _b58check(rng.choice((b"\x00", b"\x05")) + rng.randbytes(20))


ITEMS: dict[PiiType, tuple[Callable[[random.Random], str], tuple[str, ...]]] = {
    PiiType.EMAIL: (email, t.EMAIL_TEMPLATES),
    PiiType.IPV4: (ipv4, t.IPV4_TEMPLATES),
    PiiType.IPV6: (ipv6, t.IPV6_TEMPLATES),
    PiiType.SSN: (ssn, t.SSN_TEMPLATES),
    PiiType.IBAN: (iban, t.IBAN_TEMPLATES),
    PiiType.ETH_ADDRESS: (eth, t.ETH_TEMPLATES),
    PiiType.BTC_ADDRESS: (btc, t.BTC_TEMPLATES),
    PiiType.PHONE: (phone, t.PHONE_TEMPLATES),
    PiiType.CARD_NUMBER: (card, t.CARD_TEMPLATES),
}
# Names are planted more often than each other type: they come in many more forms.
KINDS = (*ITEMS, PiiType.PERSON_NAME, PiiType.PERSON_NAME, PiiType.PERSON_NAME)


# --- hard negatives ------------------------------------------------------------------


def negative(rng: random.Random) -> str:
    d = lambda n: _digits(rng, n)  # noqa: E731
    isbn12 = "978" + d(9)
    isbn_check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(isbn12)) % 10) % 10
    values = {
        "v3": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
        "v4": ".".join(str(rng.randint(0, 40)) for _ in range(4)),
        "py": f"3.{rng.randint(8, 13)}.{rng.randint(0, 12)}",
        "order_alnum": rng.choice(string.ascii_uppercase) + d(5),
        "year": rng.randint(2015, 2030),
        "n3": d(3),
        "n4": d(4),
        "n6": d(6),
        "n7": rng.randint(1_000_000, 9_999_999),
        "iso_date": f"{rng.randint(2015, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        "hm": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "eu_date": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2015, 2030)}",
        "dotted_date": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2015, 2030)}",
        "epoch": rng.randint(1_500_000_000, 1_900_000_000),
        "epoch_ms": rng.randint(1_500_000_000_000, 1_900_000_000_000),
        "isbn13": f"978-{isbn12[3]}-{isbn12[4:7]}-{isbn12[7:]}-{isbn_check}",
        "isbn10": "0-19-852663-6",
        "sha1": rng.randbytes(20).hex(),
        "sha256": rng.randbytes(32).hex(),
        "md5": rng.randbytes(16).hex(),
        "hex8": rng.randbytes(4).hex().upper(),
        "price": f"{rng.randint(1, 9)},{d(3)}.{d(2)}",
        "eu_price": f"{rng.randint(1, 9)}.{d(3)},{d(2)}",
        "big_number": f"{rng.randint(1, 999)},{d(3)},{d(3)}",
        "invoice": f"INV-{rng.randint(2015, 2030)}-{d(5)}",
        "uuid": str(uuid.UUID(bytes=rng.randbytes(16), version=4)),
        "postcode": rng.choice(("SW1A 1AA", "75008", "10115", "1012 AB", "D02 X285")),
    }
    return rng.choice(t.NEGATIVE_TEMPLATES).format(**values)


# --- messages ------------------------------------------------------------------------

SEGMENT_WEIGHTS = {Segment.PII: 20, Segment.NEGATIVE: 20, Segment.PLAIN: 60}


def _pii_sentence(rng: random.Random, kind: PiiType) -> tuple[str, int, int, bool]:
    """(sentence, start, end of the item in it, whether it must end the message)."""
    if kind is PiiType.PERSON_NAME:
        item = person_name(rng)
        sign_off = rng.random() < 0.3
        template = rng.choice(t.SIGN_OFF_TEMPLATES if sign_off else t.SELF_ID_TEMPLATES)
        start = template.index("{n}")
        return template.replace("{n}", item), start, start + len(item), sign_off
    make, templates = ITEMS[kind]
    item, template = make(rng), rng.choice(templates)
    start = template.index("{x}")
    return template.replace("{x}", item), start, start + len(item), False


def generate(seed: int, target_bytes: int, weights: dict[Segment, int] = SEGMENT_WEIGHTS) -> list[Message]:
    """Chat turns until ``target_bytes`` of UTF-8; a sign-off, when drawn, closes its turn."""
    rng = random.Random(seed)
    segments, segment_weights = list(weights), list(weights.values())
    messages: list[Message] = []
    size = 0
    while size < target_bytes:
        text = ""
        planted: list[Planted] = []
        for _ in range(rng.randint(1, 3) if len(messages) % 2 == 0 else rng.randint(3, 10)):
            segment = rng.choices(segments, weights=segment_weights)[0]
            joiner = " " if text else ""
            if segment is Segment.PII:
                kind = rng.choice(KINDS)
                sentence, start, end, last = _pii_sentence(rng, kind)
                joiner = "\n\n" if last and text else joiner
                offset = len(text) + len(joiner)
                planted.append(Planted(offset + start, offset + end, kind))
                text += joiner + sentence
                if last:
                    break
            elif segment is Segment.NEGATIVE:
                text += joiner + negative(rng)
            else:
                text += joiner + rng.choice(t.PLAIN)
        messages.append(Message(text=text, planted=tuple(planted)))
        size += len(text.encode()) + 1
    return messages


# --- scoring -------------------------------------------------------------------------

Span = tuple[int, int, PiiType]


class Score(msgspec.Struct):
    planted: int = 0
    found: int = 0  # planted items overlapped by a hit of their type
    hits: int = 0
    true_hits: int = 0  # hits overlapping a planted item of their type

    def precision(self) -> float | None:
        return self.true_hits / self.hits if self.hits else None

    def recall(self) -> float | None:
        return self.found / self.planted if self.planted else None

    def f1(self) -> float | None:
        p, r = self.precision(), self.recall()
        if p is None or r is None or p + r == 0:
            return None
        return 2 * p * r / (p + r)


def score(messages: Sequence[Message], hits: Sequence[Sequence[Span]]) -> dict[PiiType, Score]:
    """Span-level: a planted item is found when a hit of the same type overlaps it."""
    scores = {kind: Score() for kind in PiiType}
    for message, message_hits in zip(messages, hits, strict=True):
        for item in message.planted:
            scores[item.type].planted += 1
            if any(k is item.type and s < item.end and item.start < e for s, e, k in message_hits):
                scores[item.type].found += 1
        for s, e, k in message_hits:
            scores[k].hits += 1
            if any(p.type is k and s < p.end and p.start < e for p in message.planted):
                scores[k].true_hits += 1
    return scores


def misses(messages: Sequence[Message], hits: Sequence[Sequence[Span]]) -> list[tuple[str, str, str]]:
    """(kind, 'missed' or 'false', the text concerned) for every error, for debugging."""
    out: list[tuple[str, str, str]] = []
    for message, message_hits in zip(messages, hits, strict=True):
        for item in message.planted:
            if not any(k is item.type and s < item.end and item.start < e for s, e, k in message_hits):
                out.append((item.type.value, "missed", message.text[item.start : item.end]))
        for s, e, k in message_hits:
            if not any(p.type is k and s < p.end and p.start < e for p in message.planted):
                out.append((k.value, "false", message.text[max(0, s - 30) : e + 10]))
    return out
