"""Benchmark the PII redactor against Microsoft Presidio's pattern recognizers.

A seeded generator writes a labelled chat corpus: planted personal data of
every type with known spans, the hard negatives (versions, dates, order
numbers, hashes, UUIDs, ISBNs, amounts...) and plain chatter.  Both redactors
read the same messages; we report throughput and span-level precision, recall
and F1 per type, print a table and append it to ``bench/RESULTS.md``.

Two corpora.  ``heldout`` (the default) is built by ``tests/pii_corpus.py``
from the phrasing in ``tests/pii_corpus_templates.py``, a list written apart
from the redactor's rules: national phone formats of fifteen countries, IBANs
of eighteen in every spacing and case, names in forty self-introductions and
sign-offs, and its own hard negatives.  ``legacy`` is the generator below, the
one the first versions of the rules were measured on.

    .venv/bin/python bench/bench_redaction.py [--corpus heldout|legacy] [--mb 5] [--seed N] [--presidio-mb M]
        [--baseline DIR]

``--baseline DIR`` also times another copy of the redaction package (a
directory holding its modules, e.g. a snapshot taken before a change) in the
same run, on the same corpus and plain chatter, and says whether its hits are
identical to ours: before and after, measured under the same load.

Presidio runs offline: a no-op NLP engine (no spaCy model) and only its
predefined pattern recognizers, so PERSON (which needs NER) and Ethereum
(which it has no recognizer for) are reported as n/a.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import importlib
import ipaddress
import logging
import random
import string
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec

from coop.node.intake.redaction import PiiType, redact
from results import append_section, command, machine, markdown_table  # bench/results.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pii_corpus  # tests/pii_corpus.py: the held-out corpus

# --- the labelled corpus ------------------------------------------------------


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


FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Ada", "Grace", "Alan", "Zoë", "José", "Łukasz", "Søren", "Aoife",
    "Mateo", "Chiara", "Hiroshi", "Priya", "Olumide", "Fatima", "Ingrid", "Dmitri", "Anaïs",
    "Björn",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Lovelace",
    "Hopper", "Turing", "O'Brien", "Müller", "Dubois", "Rossi", "Nowak", "Jensen", "García",
    "Kowalski", "Okafor", "Tanaka", "Sharma", "Lindqvist", "Ivanova", "Hernández", "Van-Dyke",
    "Fitzgerald", "McAllister",
)  # fmt: skip
PLAIN = (
    "Can you help me rewrite this paragraph so it sounds less formal?",
    "Thanks, that worked perfectly.",
    "What's the difference between a list and a tuple in Python?",
    "I tried your suggestion but the build still fails on my laptop.",
    "Could you summarise the meeting notes below in three bullet points?",
    "Sure! Here is a shorter version of the email you asked for.",
    "The main trade-off is latency against cost; caching helps with both.",
    "Let me know if you want me to expand on any of these points.",
    "Why does my regular expression match too much?",
    "Honestly I'm not sure, it worked yesterday and nothing changed.",
    "Please translate this into French and keep the tone friendly.",
    "That's a great question: the short answer is that it depends on the data.",
    "I'll send the draft to the team tomorrow morning.",
    "Can we make the table narrower so it fits on one page?",
    "Here's the updated plan with the new deadlines highlighted.",
    "OK, and what would you do differently next time?",
)
NEGATIVE_TEMPLATES = (
    "We upgraded to v{v3} last week and the bug is gone.",
    "The server runs version {v4} which is quite old.",
    "Build {v4} fails but {v3} works.",
    "I'm on Python 3.{minor}.{patch} with pip {v3}.",
    "The meeting moved to {iso_date} at {time}.",
    "Deadline is {eu_date}, please confirm.",
    "Timestamp {iso_date}T{time}Z shows the crash.",
    "Order #{order} has not arrived yet.",
    "Invoice INV-{year}-{invoice} is overdue.",
    "Please refund order number {order}.",
    "The fix is in commit {sha1}.",
    "Checksum: sha256 {sha256}",
    "Reference {not_luhn} was rejected by the bank.",
    "The request id was {uuid}.",
    "The book's ISBN is {isbn13}.",
    "ISBN {isbn10} is the first edition.",
    "Revenue grew to ${amount} this quarter.",
    "We shipped {plain} units in {year}.",
    "It took {ms} ms and {pct}% CPU.",
    "Tracking code {tracking} is in transit.",
)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _b58check(payload: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, out = int.from_bytes(raw, "big"), ""
    while number:
        number, rem = divmod(number, 58)
        out = alphabet[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def _bech32(version: int, program: bytes) -> str:
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    acc, bits, data = 0, 0, [version]
    for byte in program:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    const = 1 if version == 0 else 0x2BC830A3
    values = [3, 3, 0, 2, 3, *data, 0, 0, 0, 0, 0, 0]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            if (top >> i) & 1:
                chk ^= gen
    polymod = chk ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return "bc1" + "".join(charset[d] for d in data + checksum)


def _iban(rng: random.Random) -> str:
    country, bank_letters, digits = rng.choice(
        (("DE", 0, 18), ("FR", 0, 23), ("ES", 0, 20), ("IT", 1, 22), ("NL", 4, 10),
         ("BE", 0, 12), ("AT", 0, 16), ("CH", 0, 17), ("PL", 0, 24), ("PT", 0, 21),
         ("GB", 4, 14), ("IE", 4, 14), ("SE", 0, 20), ("DK", 0, 14), ("FI", 0, 14),
         ("NO", 0, 11))
    )  # fmt: skip
    bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(bank_letters))
    bban += _digits(rng, digits)
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.6:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice(
        (("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
         ("6011", 16), (str(rng.randint(3528, 3589)), 16), ("4", 13))  # the last but one: JCB
    )  # fmt: skip
    number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    style = rng.random()
    if length == 15 and style < 0.5:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    if length == 16 and style < 0.4:
        return " ".join(number[i : i + 4] for i in range(0, 16, 4))
    if length == 16 and style < 0.6:
        return "-".join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _ssn(rng: random.Random) -> tuple[str, str]:
    """(the SSN as written, the template it goes in)."""
    area = rng.choice([a for a in range(1, 900) if a != 666])
    ssn = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    style = rng.random()
    if style < 0.15:
        return ssn.replace("-", ""), "My SSN: {x}"
    if style < 0.3:
        return ssn.replace("-", " "), "social security number {x}, is that safe to share?"
    return ssn, rng.choice(
        (
            "My SSN is {x}, can you fill in the form?",
            "The applicant's social security number is {x}.",
            "Use {x} for the tax return.",
        )
    )


def _phone(rng: random.Random) -> str:
    d = lambda n: _digits(rng, n)  # noqa: E731
    area = str(rng.randint(201, 989))
    return rng.choice(
        (
            f"+44 20 {d(4)} {d(4)}",
            f"+44 7700 {d(6)}",
            f"+1 ({area}) {d(3)}-{d(4)}",
            f"+1-{area}-{d(3)}-{d(4)}",
            f"({area}) {d(3)}-{d(4)}",
            f"{area}-{d(3)}-{d(4)}",
            f"{area}.{d(3)}.{d(4)}",
            f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+49 30 {d(7)}",
            f"0170 {d(7)}",
            f"020 {d(4)} {d(4)}",
            f"+41 44 {d(3)} {d(2)} {d(2)}",
            f"+34 6{d(2)} {d(3)} {d(3)}",
        )
    )


def _email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = rng.choice(
        (f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}", f"{first}+chat")
    )
    local = local.encode("ascii", "ignore").decode().lower().replace("'", "")
    domain = rng.choice(("example.com", "mail.example.org", "uni.example.ac.uk", "corp.example.de"))
    return f"{local}@{domain}"


def _ipv6(rng: random.Random) -> str:
    address = ipaddress.IPv6Address(rng.choice((0x20010DB8, 0xFE800000, 0x2A001450)) << 96)
    address += rng.getrandbits(64 if rng.random() < 0.5 else 16)
    return address.exploded if rng.random() < 0.2 else address.compressed


def _name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(FIRST_NAMES)
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


PII_TEMPLATES: dict[PiiType, tuple[Callable[[random.Random], str], tuple[str, ...]]] = {
    PiiType.EMAIL: (
        _email,
        (
            "You can reach me at {x} if anything breaks.",
            "Please forward the report to {x} and cc me.",
            "Is {x} a valid address for the form?",
        ),
    ),
    PiiType.IPV4: (
        lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        (
            "The database host is {x} and it keeps timing out.",
            "I can't ping {x} from the VPN.",
            "Whitelist {x}:8443 please.",
        ),
    ),
    PiiType.IPV6: (
        _ipv6,
        (
            "Our server listens on {x} now.",
            "Why does [{x}]:443 refuse connections?",
            "My router assigned {x} to the laptop.",
        ),
    ),
    PiiType.IBAN: (
        _iban,
        (
            "Send the deposit to IBAN {x} by Friday.",
            "My account is {x}, is that the right format?",
            "Refund to {x} please.",
        ),
    ),
    PiiType.ETH_ADDRESS: (
        lambda rng: "0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(40)),
        (
            "My wallet is {x}, send the test tokens there.",
            "Is {x} a contract or an account?",
        ),
    ),
    PiiType.BTC_ADDRESS: (
        lambda rng: rng.choice(
            (
                _b58check(b"\x00" + rng.randbytes(20)),
                _b58check(b"\x05" + rng.randbytes(20)),
                _bech32(0, rng.randbytes(20)),
                _bech32(1, rng.randbytes(32)),
            )
        ),
        (
            "Donations go to {x} if you like the project.",
            "I sent 0.01 BTC to {x} an hour ago.",
        ),
    ),
    PiiType.PHONE: (
        _phone,
        (
            "Call me on {x} after six.",
            "Our office number is {x}.",
            "Text {x} when you arrive.",
        ),
    ),
    PiiType.CARD_NUMBER: (
        _card,
        (
            "My card {x} was declined twice.",
            "Charge it to {x}, expiry 09/27.",
            "Why does the shop reject {x}?",
        ),
    ),
    PiiType.PERSON_NAME: (
        _name,
        (
            "Hi, my name is {x} and I need help with a cover letter.",
            "Call me {x}, everyone does.",
            "My name's {x}, nice to meet you.",
            "I am called {x} at work.",
        ),
    ),
}


def _negative(rng: random.Random) -> str:
    d = lambda n: _digits(rng, n)  # noqa: E731
    not_luhn = "4" + d(14)
    not_luhn += str((int(_luhn_complete(not_luhn)[-1]) + 1 + rng.randint(0, 8)) % 10)
    isbn12 = "978" + d(9)
    isbn_check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(isbn12)) % 10) % 10
    values = {
        "v3": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
        "v4": ".".join(str(rng.randint(0, 40)) for _ in range(4)),
        "minor": rng.randint(6, 13),
        "patch": rng.randint(0, 12),
        "iso_date": f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "eu_date": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2000, 2030)}",
        "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        "order": d(9),
        "year": rng.randint(2000, 2030),
        "invoice": d(6),
        "sha1": rng.randbytes(20).hex(),
        "sha256": rng.randbytes(32).hex(),
        "not_luhn": not_luhn,
        "uuid": str(uuid.UUID(bytes=rng.randbytes(16), version=4)),
        "isbn13": f"{isbn12[:3]}-{isbn12[3]}-{isbn12[4:6]}-{isbn12[6:]}-{isbn_check}",
        "isbn10": "0-306-40615-2",
        "amount": f"{rng.randint(1, 999)},{d(3)},{d(3)}.{d(2)}",
        "plain": rng.randint(1000, 99_999_999),
        "ms": rng.randint(1, 5000),
        "pct": rng.randint(1, 100),
        "tracking": "1Z" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
    }
    return rng.choice(NEGATIVE_TEMPLATES).format(**values)


def _pii_sentence(rng: random.Random, kind: PiiType) -> tuple[str, int, int]:
    if kind is PiiType.SSN:
        item, template = _ssn(rng)
    else:
        make, templates = PII_TEMPLATES[kind]
        item, template = make(rng), rng.choice(templates)
    start = template.index("{x}")
    return template.replace("{x}", item), start, start + len(item)


ALL_PII = (*PII_TEMPLATES, PiiType.SSN)


# Sentence mix: PII and hard negatives are far denser than in real chats, so
# that a few MB give each type hundreds of planted items.
SEGMENT_WEIGHTS = {Segment.PII: 15, Segment.NEGATIVE: 15, Segment.PLAIN: 70}


def generate_corpus(
    seed: int, target_bytes: int, weights: dict[Segment, int] = SEGMENT_WEIGHTS
) -> list[Message]:
    """Chat turns until ``target_bytes`` of UTF-8: short user turns, longer replies."""
    rng = random.Random(seed)
    segments, segment_weights = list(weights), list(weights.values())
    messages: list[Message] = []
    size = 0
    while size < target_bytes:
        parts: list[str] = []
        planted: list[Planted] = []
        offset = 0
        sentences = rng.randint(1, 3) if len(messages) % 2 == 0 else rng.randint(3, 14)
        for _ in range(sentences):
            segment = rng.choices(segments, weights=segment_weights)[0]
            if segment is Segment.PII:
                kind = rng.choice(ALL_PII)
                sentence, start, end = _pii_sentence(rng, kind)
                planted.append(Planted(offset + start, offset + end, kind))
            elif segment is Segment.NEGATIVE:
                sentence = _negative(rng)
            else:
                sentence = rng.choice(PLAIN)
            parts.append(sentence)
            offset += len(sentence) + 1
        text = " ".join(parts)
        messages.append(Message(text=text, planted=tuple(planted)))
        size += len(text.encode()) + 1
    return messages


# --- scoring -----------------------------------------------------------------

# Presidio entity -> our type; IP_ADDRESS is split by the matched text.
PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": PiiType.EMAIL,
    "US_SSN": PiiType.SSN,
    "IBAN_CODE": PiiType.IBAN,
    "CRYPTO": PiiType.BTC_ADDRESS,
    "PHONE_NUMBER": PiiType.PHONE,
    "CREDIT_CARD": PiiType.CARD_NUMBER,
    "PERSON": PiiType.PERSON_NAME,
}
PRESIDIO_NA = frozenset({PiiType.ETH_ADDRESS, PiiType.PERSON_NAME})

Span = pii_corpus.Span
Score = pii_corpus.Score  # one scoring rule for the bench and the corpus-floor tests


def false_hits(messages: Sequence[Message | pii_corpus.Message], hits: Sequence[Sequence[Span]]) -> int:
    """Hits that overlap no planted item at all: flagged hard negatives and chatter."""
    return sum(
        not any(p.start < e and s < p.end for p in message.planted)
        for message, message_hits in zip(messages, hits, strict=True)
        for s, e, _ in message_hits
    )


def score(
    messages: Sequence[Message | pii_corpus.Message], hits: Sequence[Sequence[Span]]
) -> dict[PiiType, Score]:
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


# --- the two redactors ---------------------------------------------------------


def run_ours(
    messages: Sequence[Message | pii_corpus.Message],
    repeats: int = 3,
    redactor: Callable[[str], Any] = redact,
) -> tuple[list[list[Span]], float]:
    """Our hits and the best of ``repeats`` timed passes (the machine is shared)."""
    texts = [m.text for m in messages]
    redactor(texts[0])  # warm
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        results = [redactor(text) for text in texts]
        best = min(best, time.perf_counter() - started)
    return [[(h.start, h.end, PiiType(h.type.value)) for h in r.hits] for r in results], best


def load_baseline(directory: Path) -> Callable[[str], Any]:
    """``redact`` of the redaction package copied in ``directory``, imported under another name.

    The copy's absolute imports of ``coop.node.intake.redaction`` are pointed at
    the copy itself (in a temporary directory), so it runs beside ours.
    """
    name = "redaction_baseline"
    root = Path(tempfile.mkdtemp(prefix="bench-redaction-"))
    (root / name).mkdir()
    for module in sorted(directory.glob("*.py")):
        source = module.read_text(encoding="utf-8").replace("coop.node.intake.redaction", name)
        (root / name / module.name).write_text(source, encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        baseline: Callable[[str], Any] = importlib.import_module(name).redact
    finally:
        sys.path.remove(str(root))
    return baseline


def build_presidio() -> Any | None:
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            CryptoRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )
    except ImportError:
        return None
    # tldextract (behind the email recognizer) tries to download the public
    # suffix list, fails offline and falls back to its bundled snapshot; its
    # traceback is noise here.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    ):
        registry.add_recognizer(recognizer())
    engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def run_presidio(
    analyzer: Any, messages: Sequence[Message | pii_corpus.Message], min_score: float
) -> tuple[list[list[Span]], list[list[Span]], float]:
    """Hits at Presidio's default threshold (0) and at ``min_score``, and the time."""
    analyzer.analyze(messages[0].text, language="en")  # warm (loads the suffix list)
    raw: list[list[tuple[int, int, str, float]]] = []
    started = time.perf_counter()
    for message in messages:
        results = analyzer.analyze(message.text, language="en")
        raw.append([(r.start, r.end, r.entity_type, r.score) for r in results])
    elapsed = time.perf_counter() - started

    def mapped(threshold: float) -> list[list[Span]]:
        out: list[list[Span]] = []
        for message, results in zip(messages, raw, strict=True):
            spans: list[Span] = []
            for start, end, entity, value in results:
                if value < threshold:
                    continue
                if entity == "IP_ADDRESS":
                    kind = PiiType.IPV6 if ":" in message.text[start:end] else PiiType.IPV4
                elif entity in PRESIDIO_TYPES:
                    kind = PRESIDIO_TYPES[entity]
                else:
                    continue
                spans.append((start, end, kind))
            out.append(spans)
        return out

    return mapped(0.0), mapped(min_score), elapsed


# --- report ------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}"


def _row(score: Score | None) -> list[str]:
    if score is None:
        return ["n/a", "n/a", "n/a"]
    return [_pct(score.precision()), _pct(score.recall()), _pct(score.f1())]


def _micro(scores: dict[PiiType, Score], kinds: Iterable[PiiType]) -> Score:
    total = Score()
    for kind in kinds:
        s = scores[kind]
        total.planted += s.planted
        total.found += s.found
        total.hits += s.hits
        total.true_hits += s.true_hits
    return total


def table(
    ours: dict[PiiType, Score],
    presidio: dict[str, dict[PiiType, Score]],
) -> str:
    headers = ["type", "planted", "ours P", "ours R", "ours F1"]
    for label in presidio:
        headers += [f"{label} P", f"{label} R", f"{label} F1"]
    rows = []
    for kind in PiiType:
        row = [kind.value, str(ours[kind].planted), *_row(ours[kind])]
        for scores in presidio.values():
            row += _row(None if kind in PRESIDIO_NA else scores[kind])
        rows.append(row)
    comparable = [k for k in PiiType if not presidio or k not in PRESIDIO_NA]
    label = "all Presidio can detect" if presidio else "all"
    row = [label, str(_micro(ours, comparable).planted)]
    row += _row(_micro(ours, comparable))
    for scores in presidio.values():
        row += _row(_micro(scores, comparable))
    rows.append(row)
    return markdown_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        choices=("heldout", "legacy"),
        default="heldout",
        help="heldout: tests/pii_corpus_templates.py (default); legacy: this file's generator",
    )
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB (default 5)")
    parser.add_argument("--seed", type=int, default=20240115, help="corpus seed")
    parser.add_argument(
        "--presidio-mb",
        type=float,
        default=None,
        help="run Presidio on only the first M MB of the corpus (default: all of it)",
    )
    parser.add_argument("--min-score", type=float, default=0.5, help="second Presidio threshold")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also time the redaction package copied in this directory (e.g. before a change)",
    )
    args = parser.parse_args(argv)

    print(f"seed {args.seed}; generating {args.mb} MB {args.corpus} corpus ...", flush=True)
    heldout = args.corpus == "heldout"
    messages: list[Message] | list[pii_corpus.Message] = (
        pii_corpus.generate(args.seed, int(args.mb * 1_000_000))
        if heldout
        else generate_corpus(args.seed, int(args.mb * 1_000_000))
    )
    corpus_bytes = sum(len(m.text.encode()) for m in messages)
    planted = sum(len(m.planted) for m in messages)
    print(f"{len(messages)} messages, {corpus_bytes / 1e6:.2f} MB, {planted} planted items")

    ours_hits, ours_seconds = run_ours(messages)
    ours_mbps = corpus_bytes / ours_seconds / 1e6
    ours_scores = score(messages, ours_hits)
    print(f"ours: {ours_mbps:.1f} MB/s ({ours_seconds:.2f} s)", flush=True)
    # The same turn shapes with plain chatter only: the common case in production.
    plain: list[Message] | list[pii_corpus.Message] = (
        pii_corpus.generate(args.seed, int(args.mb * 1_000_000), {pii_corpus.Segment.PLAIN: 1})
        if heldout
        else generate_corpus(args.seed, int(args.mb * 1_000_000), {Segment.PLAIN: 1})
    )
    plain_bytes = sum(len(m.text.encode()) for m in plain)
    plain_hits, plain_seconds = run_ours(plain)
    plain_mbps = plain_bytes / plain_seconds / 1e6
    print(f"ours, plain chatter only: {plain_mbps:.1f} MB/s", flush=True)
    baseline_lines: list[str] = []
    if args.baseline is not None:
        baseline = load_baseline(args.baseline)
        base_hits, base_seconds = run_ours(messages, redactor=baseline)
        base_plain_hits, base_plain_seconds = run_ours(plain, redactor=baseline)
        base_mbps = corpus_bytes / base_seconds / 1e6
        base_plain_mbps = plain_bytes / base_plain_seconds / 1e6
        same = base_hits == ours_hits and base_plain_hits == plain_hits
        baseline_lines.append(
            f"- baseline `{args.baseline}` in the same run: {base_mbps:.1f} MB/s on this corpus"
            f" → ours {ours_mbps:.1f} MB/s (**{ours_mbps / base_mbps:.2f}x**);"
            f" plain chatter {base_plain_mbps:.1f} MB/s → {plain_mbps:.1f} MB/s"
            f" (**{plain_mbps / base_plain_mbps:.2f}x**); hits identical on both: {'yes' if same else 'NO'}"
        )
        print(baseline_lines[-1][2:], flush=True)

    analyzer = build_presidio()
    presidio_scores: dict[str, dict[PiiType, Score]] = {}
    lines: list[str] = []
    if analyzer is None:
        note = "Presidio skipped: presidio-analyzer is not installed (pip install '.[bench]')."
        print(note)
        lines.append(note)
        quality_scores = ours_scores
        subset_note = ""
        lines.append(f"- false hits (overlapping no planted item): ours {false_hits(messages, ours_hits)}")
    else:
        subset: Sequence[Message | pii_corpus.Message] = messages
        if args.presidio_mb is not None:
            limit, size, taken = int(args.presidio_mb * 1_000_000), 0, 0
            for message in messages:
                if size >= limit:
                    break
                taken += 1
                size += len(message.text.encode()) + 1
            subset = messages[:taken]
        subset_bytes = sum(len(m.text.encode()) for m in subset)
        print(f"presidio: analysing {subset_bytes / 1e6:.2f} MB ...", flush=True)
        default_hits, strict_hits, presidio_seconds = run_presidio(analyzer, subset, args.min_score)
        presidio_mbps = subset_bytes / presidio_seconds / 1e6
        presidio_scores = {
            "Presidio": score(subset, default_hits),
            f"Presidio≥{args.min_score:g}": score(subset, strict_hits),
        }
        false_line = (
            f"- false hits (overlapping no planted item) on those {subset_bytes / 1e6:.2f} MB:"
            f" ours {false_hits(subset, ours_hits[: len(subset)])},"
            f" Presidio {false_hits(subset, default_hits)},"
            f" Presidio≥{args.min_score:g} {false_hits(subset, strict_hits)}"
        )
        # Quality side by side on exactly the messages both saw.
        quality_scores = score(subset, ours_hits[: len(subset)])
        subset_note = (
            f" (quality on the first {subset_bytes / 1e6:.2f} MB that Presidio also read)"
            if len(subset) < len(messages)
            else ""
        )
        lines += [
            f"- Presidio {version('presidio-analyzer')}: {presidio_mbps:.3f} MB/s "
            f"({presidio_seconds:.1f} s on {subset_bytes / 1e6:.2f} MB); "
            "no-op NLP engine, recognizers CreditCard, Crypto, Email, Iban, Ip, Phone, UsSsn",
            f"- throughput ratio ours / Presidio: **{ours_mbps / presidio_mbps:,.0f}x**",
            false_line,
        ]
    report = table(quality_scores, presidio_scores)
    mix = (
        "held-out templates, tests/pii_corpus_templates.py; sentences: 20% with PII, 20% hard negatives, 60% plain"
        if heldout
        else "legacy generator; sentences: 15% with PII, 15% hard negatives, 70% plain"
    )
    summary = [
        f"- corpus: seed {args.seed}, {len(messages)} messages, {corpus_bytes / 1e6:.2f} MB, "
        f"{planted} planted items ({mix})",
        f"- ours: **{ours_mbps:.1f} MB/s** on this corpus ({ours_seconds:.2f} s, single thread,"
        f" best of 3); **{plain_mbps:.1f} MB/s** on plain chatter of the same turn shapes"
        f" ({plain_bytes / 1e6:.2f} MB, {sum(map(len, plain_hits))} hits)",
        *baseline_lines,
        *lines,
        "- span-level P/R/F1 in %: a planted item counts as found when a hit of the same"
        f" type overlaps it{subset_note}"
        + (
            f"; Presidio = default threshold (0), Presidio≥{args.min_score:g} = results scoring"
            f" ≥ {args.min_score:g}; n/a = Presidio cannot detect the type offline"
            if presidio_scores
            else ""
        ),
    ]
    print()
    print("\n".join(summary))
    print()
    print(report)

    if not args.no_record:
        path = append_section(
            "PII redaction" + (" (held-out corpus)" if heldout else ""),
            [f"- command: `{command(__file__)}`", f"- machine: {machine()}", *summary, "", report],
        )
        print(f"\nappended to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
