"""Payout arithmetic for a release: split an amount between the contributors and the commons.

Everything is exact (integers in the currency's minor unit and ``Fraction`` shares, never
floats) and the lines of a ledger always sum to the amount paid.  Lines are grouped by
payee string only, so an anonymous record is never linked to its author's named records:
anonymous records are paid under one line for all of them (:data:`ANONYMOUS_PAYEE`) in a
public ledger; the node pays each member from its internal ledger, and
:func:`regroup` derives both from one computation so that they agree to the unit.
"""

from __future__ import annotations

import csv
import enum
import io
import math
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Final

import msgspec

from coop.governance.canonical import MAX_SAFE_INTEGER
from coop.governance.errors import InvalidValueError
from coop.governance.record import AttributionMode, Label, parse_enum

__all__ = [
    "ANONYMOUS_PAYEE",
    "COMMONS_PAYEE",
    "CURRENCY_MINOR_UNITS",
    "DEFAULT_WEIGHTS",
    "MAX_WEIGHT",
    "LineKind",
    "PayoutLedger",
    "PayoutLine",
    "PayoutRecord",
    "PayoutSplit",
    "RecordKind",
    "Rounding",
    "compute_payouts",
    "parse_amount",
    "payee_for",
    "record_kind",
    "regroup",
]

BASIS_POINTS: Final = 10_000
# Weights are capped so that line weights and ledgers stay canonical-encodable (below 2**53).
MAX_WEIGHT: Final = 1_000_000
COMMONS_PAYEE: Final = "commons"
# Anonymous records share one public line: nothing in a ledger tells one anonymous member
# from another, or ties them to their credited records.
ANONYMOUS_PAYEE: Final = "anonymous contributors"
_ANONYMOUS_PREFIX: Final = "anonymous-"

# ISO 4217 minor units (exponents) of the currencies a co-op is likely to be paid in.
CURRENCY_MINOR_UNITS: Final[Mapping[str, int]] = {
    "AED": 2,
    "ARS": 2,
    "AUD": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "COP": 2,
    "CZK": 2,
    "DKK": 2,
    "EGP": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KES": 2,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NGN": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PEN": 2,
    "PHP": 2,
    "PLN": 2,
    "RUB": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TND": 3,
    "TRY": 2,
    "TWD": 2,
    "UAH": 2,
    "UGX": 0,
    "USD": 2,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
    "ZAR": 2,
}

# Plain ASCII decimals only: no sign, exponent, underscores, spaces, NaN or Infinity.
_AMOUNT_RE: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
# Spreadsheet programs run cells that start with these as formulas (CSV injection).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


class RecordKind(enum.StrEnum):
    """What a record is worth paying for: the member's effort beyond sharing the chat."""

    GOOD = "good"
    FAIL = "fail"
    FAIL_CORRECTED = "fail_corrected"
    GOOD_ANNOTATED = "good_annotated"


class Rounding(enum.StrEnum):
    """Where the minor units left over after flooring every exact share go."""

    LARGEST_REMAINDER = "largest_remainder"
    REMAINDER_TO_COMMONS = "remainder_to_commons"


class LineKind(enum.StrEnum):
    """A ledger line pays a contributor or the commons; the kind keeps the two apart."""

    COMMONS = "commons"
    CONTRIBUTOR = "contributor"


DEFAULT_WEIGHTS: Final[Mapping[str, int]] = {
    RecordKind.GOOD.value: 1,
    RecordKind.FAIL.value: 1,
    RecordKind.FAIL_CORRECTED.value: 3,
    RecordKind.GOOD_ANNOTATED.value: 2,
}


def record_kind(label: str, has_correction: bool, has_note_or_feedback: bool) -> RecordKind:
    """Classify a record for weighting; a correction on a good chat counts as an annotation."""
    match parse_enum(Label, label, field="label"):
        case Label.FAIL:
            return RecordKind.FAIL_CORRECTED if has_correction else RecordKind.FAIL
        case Label.GOOD:
            annotated = has_correction or has_note_or_feedback
            return RecordKind.GOOD_ANNOTATED if annotated else RecordKind.GOOD


def payee_for(attribution_mode: str, attribution_name: str | None) -> str:
    """The name a record is paid under in a public ledger: what the member chose to be known as.

    A handle or a pseudonym pays under itself; every anonymous record under
    :data:`ANONYMOUS_PAYEE`.  A public name that looks like an anonymous payee is refused,
    so that nobody can claim (or merge with) the anonymous line.
    """
    mode = parse_enum(AttributionMode, attribution_mode, field="attribution")
    if mode is AttributionMode.ANONYMOUS:
        return ANONYMOUS_PAYEE
    if not attribution_name:
        raise InvalidValueError(f"a {mode.value} attribution needs a name", field="attribution")
    folded = attribution_name.casefold()
    if folded.startswith(_ANONYMOUS_PREFIX) or folded == ANONYMOUS_PAYEE:
        raise InvalidValueError(f"a public name may not pass for {ANONYMOUS_PAYEE!r}", field="attribution")
    return attribution_name


def regroup(ledger: PayoutLedger, payee_of: Mapping[str, str]) -> PayoutLedger:
    """The same payout with its contributor lines merged under other names.

    ``payee_of`` names the new payee of every contributor line.  Amounts, records and
    weights of merged lines add up, so the lines still sum exactly to the amount; two
    ledgers regrouped from one computation (per member, per public name) agree to the unit.
    """
    merged: dict[str, list[int]] = {}
    lines: list[PayoutLine] = []
    for line in ledger.lines:
        if line.kind is LineKind.COMMONS:
            lines.append(line)
            continue
        payee = payee_of.get(line.payee)
        if payee is None:
            raise InvalidValueError(f"no payee given for line {line.payee!r}", field="payee_of")
        tally = merged.setdefault(payee, [0, 0, 0])
        tally[0] += line.records
        tally[1] += line.weight
        tally[2] += line.amount_minor
    for payee, (records, weight, minor) in merged.items():
        lines.append(
            PayoutLine(
                payee=payee,
                kind=LineKind.CONTRIBUTOR,
                records=records,
                weight=weight,
                amount_minor=minor,
                amount=_format_minor(minor, ledger.exponent),
            )
        )
    lines.sort(key=lambda line: (line.kind is not LineKind.COMMONS, -line.amount_minor, line.payee))
    return msgspec.structs.replace(ledger, lines=tuple(lines))


def parse_amount(text: str, currency: str) -> tuple[int, int]:
    """Read a positive decimal amount as ``(minor units, exponent)`` for ``currency``.

    Only plain decimals with at most the currency's number of places are accepted, so that
    an amount never gets rounded on the way in.
    """
    exponent = CURRENCY_MINOR_UNITS.get(currency)
    if exponent is None:
        raise InvalidValueError(f"{currency!r} is not a known ISO 4217 currency code", field="currency")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise InvalidValueError(f"{text!r} is not a plain decimal amount such as 1000.00", field="amount")
    whole, places = match.group(1), match.group(2) or ""
    if len(places) > exponent:
        raise InvalidValueError(
            f"{currency} amounts have at most {exponent} decimal places, got {len(places)}", field="amount"
        )
    minor = int(whole + places.ljust(exponent, "0"))
    if minor == 0:
        raise InvalidValueError("the amount must be more than zero", field="amount")
    if minor > MAX_SAFE_INTEGER:
        raise InvalidValueError("the amount is too large to record exactly", field="amount")
    return minor, exponent


class PayoutSplit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a release's payment is shared: contributors' and commons' basis points, weights, rounding.

    A kind missing from ``weights`` takes its default weight, so splits stored before a
    new kind existed keep meaning what they meant.
    """

    contributors_bp: int = 7000
    commons_bp: int = 3000
    weights: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rounding: Rounding = Rounding.LARGEST_REMAINDER

    def __post_init__(self) -> None:
        for name, bp in (("contributors_bp", self.contributors_bp), ("commons_bp", self.commons_bp)):
            if not _is_int(bp) or not 0 <= bp <= BASIS_POINTS:
                raise InvalidValueError(
                    f"{name} must be an integer from 0 to {BASIS_POINTS}", field=f"payout.{name}"
                )
        if self.contributors_bp + self.commons_bp != BASIS_POINTS:
            raise InvalidValueError(
                "shares must sum to 100% (contributors_bp + commons_bp = 10000)", field="payout.commons_bp"
            )
        for kind, weight in self.weights.items():
            if kind not in DEFAULT_WEIGHTS:
                allowed = ", ".join(DEFAULT_WEIGHTS)
                raise InvalidValueError(f"{kind!r} is not one of: {allowed}", field="payout.weights")
            if not _is_int(weight) or not 0 <= weight <= MAX_WEIGHT:
                raise InvalidValueError(
                    f"a weight must be an integer from 0 to {MAX_WEIGHT}", field=f"payout.weights.{kind}"
                )
        parse_enum(Rounding, self.rounding, field="payout.rounding")

    def weight_of(self, kind: RecordKind) -> int:
        """The weight of one record of ``kind``."""
        return self.weights.get(kind.value, DEFAULT_WEIGHTS[kind.value])


class PayoutRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One record of a release as the payout sees it: who is paid for it and what kind it is."""

    uid: str
    payee: str
    kind: RecordKind
    withdrawn: bool = False


class PayoutLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one payee gets; ``amount`` is ``amount_minor`` as decimal text with the currency's places."""

    payee: str
    kind: LineKind
    records: int
    weight: int
    amount_minor: int
    amount: str


class PayoutLedger(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The payout of one release: the amount, the split used and one line per payee."""

    release: str
    currency: str
    amount: str
    amount_minor: int
    exponent: int
    split: PayoutSplit
    lines: tuple[PayoutLine, ...]
    records: int
    excluded_withdrawn: int

    def total_minor(self) -> int:
        """The sum of the lines, which equals ``amount_minor``."""
        return sum(line.amount_minor for line in self.lines)

    def to_csv(self) -> str:
        """The lines as CSV (RFC 4180, CRLF), with payees guarded against spreadsheet formulas."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["payee", "kind", "records", "weight", "amount", "currency"])
        for line in self.lines:
            payee = "'" + line.payee if line.payee.startswith(_FORMULA_STARTS) else line.payee
            writer.writerow([payee, line.kind.value, line.records, line.weight, line.amount, self.currency])
        return out.getvalue()


class _Tally(msgspec.Struct):
    records: int = 0
    weight: int = 0


def compute_payouts(
    release: str,
    records: Iterable[PayoutRecord],
    *,
    amount: str,
    currency: str,
    split: PayoutSplit,
) -> PayoutLedger:
    """Share ``amount`` between the commons and the payees of ``records``, exactly.

    Withdrawn records earn nothing and make no line; a payee whose records all weigh 0 gets
    a line of 0.  With no weight at all, everything goes to the commons.
    """
    if not release:
        raise InvalidValueError("a payout needs a release name", field="release")
    amount_minor, exponent = parse_amount(amount, currency)

    tallies: dict[str, _Tally] = {}
    seen: set[str] = set()
    withdrawn = 0
    for record in records:
        if record.uid in seen:
            raise InvalidValueError(f"record {record.uid!r} is listed twice", field="records")
        seen.add(record.uid)
        weight = split.weight_of(parse_enum(RecordKind, record.kind, field="records.kind"))
        if record.withdrawn:
            withdrawn += 1
            continue
        tally = tallies.setdefault(record.payee, _Tally())
        tally.records += 1
        tally.weight += weight

    total_weight = sum(t.weight for t in tallies.values())
    contributors_pot = (
        Fraction(amount_minor * split.contributors_bp, BASIS_POINTS) if total_weight else Fraction(0)
    )

    # Line keys (kind, payee) sort the commons first and never confuse it with a payee "commons".
    exact: dict[tuple[LineKind, str], Fraction] = {
        (LineKind.COMMONS, COMMONS_PAYEE): amount_minor - contributors_pot
    }
    for payee, tally in tallies.items():
        exact[(LineKind.CONTRIBUTOR, payee)] = (
            contributors_pot * tally.weight / total_weight if total_weight else Fraction(0)
        )

    paid = {key: math.floor(share) for key, share in exact.items()}
    leftover = amount_minor - sum(paid.values())
    if parse_enum(Rounding, split.rounding, field="payout.rounding") is Rounding.REMAINDER_TO_COMMONS:
        paid[(LineKind.COMMONS, COMMONS_PAYEE)] += leftover
    else:
        # Fewer units are left than there are nonzero remainders, so no line moves a whole unit.
        order = sorted(exact, key=lambda key: (-(exact[key] - paid[key]), -exact[key], key))
        for key in order[:leftover]:
            paid[key] += 1

    lines = []
    for (kind, payee), minor in paid.items():
        tally = tallies[payee] if kind is LineKind.CONTRIBUTOR else _Tally()
        lines.append(
            PayoutLine(
                payee=payee,
                kind=kind,
                records=tally.records,
                weight=tally.weight,
                amount_minor=minor,
                amount=_format_minor(minor, exponent),
            )
        )
    lines.sort(key=lambda line: (line.kind is not LineKind.COMMONS, -line.amount_minor, line.payee))
    return PayoutLedger(
        release=release,
        currency=currency,
        amount=_format_minor(amount_minor, exponent),
        amount_minor=amount_minor,
        exponent=exponent,
        split=split,
        lines=tuple(lines),
        records=sum(t.records for t in tallies.values()),
        excluded_withdrawn=withdrawn,
    )


def _format_minor(minor: int, exponent: int) -> str:
    """Minor units as decimal text with exactly ``exponent`` places (``23334, 2`` -> ``233.34``)."""
    if exponent == 0:
        return str(minor)
    whole, part = divmod(minor, 10**exponent)
    return f"{whole}.{part:0{exponent}d}"


def _is_int(value: object) -> bool:
    # bool is an int subclass; True is not a weight.
    return isinstance(value, int) and not isinstance(value, bool)
