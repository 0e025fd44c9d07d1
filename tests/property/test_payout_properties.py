"""Payout invariants: exact sums, no negative line, monotone in weight, withdrawals and order ignored."""

from __future__ import annotations

import contextlib
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from coop.governance import GovernanceError
from coop.governance.payouts import (
    CURRENCY_MINOR_UNITS,
    LineKind,
    PayoutLedger,
    PayoutRecord,
    PayoutSplit,
    RecordKind,
    Rounding,
    compute_payouts,
    parse_amount,
)

# A few payees, including one named like the commons line and anonymous ones.
PAYEES = st.sampled_from(["ada", "bob", "cy", "commons", "anonymous-0123abcd", "anonymous-ffee0011", "Zoë"])
KINDS = st.sampled_from(list(RecordKind))


@st.composite
def record_lists(draw: st.DrawFn, *, withdrawn: bool = True) -> list[PayoutRecord]:
    spec = draw(
        st.lists(st.tuples(PAYEES, KINDS, st.booleans() if withdrawn else st.just(False)), max_size=12)
    )
    return [PayoutRecord(f"r{i}", payee, kind, gone) for i, (payee, kind, gone) in enumerate(spec)]


@st.composite
def splits(draw: st.DrawFn, rounding: Rounding | None = None) -> PayoutSplit:
    contributors_bp = draw(st.one_of(st.integers(0, 10_000), st.sampled_from([0, 3333, 7000, 10_000])))
    weights = draw(st.dictionaries(st.sampled_from([k.value for k in RecordKind]), st.integers(0, 7)))
    return PayoutSplit(
        contributors_bp=contributors_bp,
        commons_bp=10_000 - contributors_bp,
        weights=weights,
        rounding=rounding or draw(st.sampled_from(list(Rounding))),
    )


@st.composite
def amounts(draw: st.DrawFn) -> tuple[str, str]:
    """(amount text, currency), written independently of the code under test."""
    currency = draw(st.sampled_from(sorted(CURRENCY_MINOR_UNITS)))
    exponent = CURRENCY_MINOR_UNITS[currency]
    # Small, round (whole thousands of minor units) and large amounts: round ones give zero remainders.
    minor = draw(
        st.one_of(st.integers(1, 100), st.integers(1, 1000).map(lambda n: n * 1000), st.integers(1, 10**15))
    )
    digits = str(minor).rjust(exponent + 1, "0")
    text = f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
    return text, currency


def _compute(records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit) -> PayoutLedger:
    return compute_payouts("r1", records, amount=amount[0], currency=amount[1], split=split)


@settings(deadline=None)
@given(record_lists(), amounts(), splits())
def test_payout_lines_sum_exactly_to_the_amount(
    records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    ledger = _compute(records, amount, split)
    minor, exponent = parse_amount(*amount)
    assert ledger.total_minor() == ledger.amount_minor == minor
    assert ledger.exponent == exponent
    for line in ledger.lines:
        whole, _, part = line.amount.partition(".")
        assert len(part) == exponent
        assert int(whole + part) == line.amount_minor


@settings(deadline=None)
@given(record_lists(), amounts(), splits())
def test_payout_no_line_is_negative(
    records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    ledger = _compute(records, amount, split)
    assert all(line.amount_minor >= 0 for line in ledger.lines)
    assert not any(line.amount.startswith("-") for line in ledger.lines)


@settings(deadline=None)
@given(record_lists(), amounts(), splits())
def test_payout_more_weight_never_earns_less(
    records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    ledger = _compute(records, amount, split)
    contributors = [line for line in ledger.lines if line.kind is LineKind.CONTRIBUTOR]
    for heavier in contributors:
        for lighter in contributors:
            if heavier.weight > lighter.weight:
                assert heavier.amount_minor >= lighter.amount_minor, (heavier, lighter)


@settings(deadline=None)
@given(record_lists(withdrawn=False), st.lists(st.tuples(PAYEES, KINDS), max_size=6), amounts(), splits())
def test_payout_withdrawn_records_earn_nothing(
    records: list[PayoutRecord],
    extra: list[tuple[str, RecordKind]],
    amount: tuple[str, str],
    split: PayoutSplit,
) -> None:
    withdrawn = [PayoutRecord(f"w{i}", payee, kind, withdrawn=True) for i, (payee, kind) in enumerate(extra)]
    before = _compute(records, amount, split)
    after = _compute(records + withdrawn, amount, split)
    assert after.lines == before.lines
    assert after.records == before.records
    assert after.excluded_withdrawn == len(withdrawn)


@settings(deadline=None, max_examples=300)
@given(st.data(), record_lists(), amounts(), splits())
def test_payout_ignores_record_order(
    data: st.DataObject, records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    expected = _compute(records, amount, split)
    # Reversing always changes which payee comes first; the drawn permutation explores the rest.
    assert _compute(records[::-1], amount, split) == expected
    assert _compute(data.draw(st.permutations(records)), amount, split) == expected


@settings(deadline=None)
@given(record_lists(), amounts(), splits(Rounding.LARGEST_REMAINDER))
def test_payout_largest_remainder_lines_are_within_one_unit_of_exact(
    records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    ledger = _compute(records, amount, split)
    total_weight = sum(line.weight for line in ledger.lines)
    pot = Fraction(ledger.amount_minor * split.contributors_bp, 10_000) if total_weight else Fraction(0)
    for line in ledger.lines:
        if line.kind is LineKind.COMMONS:
            exact = ledger.amount_minor - pot
        else:
            exact = pot * line.weight / total_weight if total_weight else Fraction(0)
        assert abs(line.amount_minor - exact) < 1, (line, exact)


@settings(deadline=None)
@given(record_lists(), amounts(), splits(Rounding.REMAINDER_TO_COMMONS))
def test_payout_remainder_to_commons_floors_every_contributor(
    records: list[PayoutRecord], amount: tuple[str, str], split: PayoutSplit
) -> None:
    ledger = _compute(records, amount, split)
    total_weight = sum(line.weight for line in ledger.lines)
    for line in ledger.lines:
        if line.kind is LineKind.CONTRIBUTOR:
            if total_weight == 0:
                assert line.amount_minor == 0
            else:
                exact = Fraction(
                    ledger.amount_minor * split.contributors_bp * line.weight, 10_000 * total_weight
                )
                assert line.amount_minor == int(exact)


@settings(deadline=None)
@given(amounts())
def test_parse_amount_reads_what_was_written(amount: tuple[str, str]) -> None:
    """The writer above makes canonical text, so the ledger writes the amount back unchanged."""
    text, currency = amount
    minor, exponent = parse_amount(text, currency)
    ledger = compute_payouts("r1", [], amount=text, currency=currency, split=PayoutSplit())
    assert ledger.amount == text
    assert (ledger.amount_minor, ledger.exponent) == (minor, exponent)


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=40), st.sampled_from([*sorted(CURRENCY_MINOR_UNITS), "", "eur", "XXX"]))
def test_parse_amount_arbitrary_text_never_crashes(text: str, currency: str) -> None:
    with contextlib.suppress(GovernanceError):
        minor, exponent = parse_amount(text, currency)
        assert minor > 0
        assert exponent == CURRENCY_MINOR_UNITS[currency]
