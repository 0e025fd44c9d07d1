"""Payout arithmetic: named cases for splits, rounding, currencies, privacy and validation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from coop.governance import InvalidValueError, canonical_bytes
from coop.governance.payouts import (
    ANONYMOUS_PAYEE,
    CURRENCY_MINOR_UNITS,
    LineKind,
    PayoutLedger,
    PayoutRecord,
    PayoutSplit,
    RecordKind,
    Rounding,
    compute_payouts,
    parse_amount,
    payee_for,
    record_kind,
    regroup,
)

G, F, FC, GA = RecordKind.GOOD, RecordKind.FAIL, RecordKind.FAIL_CORRECTED, RecordKind.GOOD_ANNOTATED
COMMONS = (LineKind.COMMONS, "commons")


def _records(*spec: tuple[str, RecordKind] | tuple[str, RecordKind, bool]) -> list[PayoutRecord]:
    """Records numbered r0, r1... from (payee, kind[, withdrawn]) tuples."""
    return [PayoutRecord(f"r{i}", s[0], s[1], *s[2:]) for i, s in enumerate(spec)]


def _amounts(ledger: PayoutLedger) -> list[tuple[LineKind, str, str]]:
    return [(line.kind, line.payee, line.amount) for line in ledger.lines]


def _c(payee: str, amount: str) -> tuple[LineKind, str, str]:
    return (LineKind.CONTRIBUTOR, payee, amount)


def _commons(amount: str) -> tuple[LineKind, str, str]:
    return (LineKind.COMMONS, "commons", amount)


# --- record kinds and payees -----------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "correction", "note", "expected"),
    [
        pytest.param("good", False, False, G, id="plain-good"),
        pytest.param("good", False, True, GA, id="good-with-note"),
        pytest.param("good", True, False, GA, id="good-with-correction-counts-as-annotated"),
        pytest.param("fail", False, False, F, id="plain-fail"),
        pytest.param("fail", False, True, F, id="fail-with-note-only"),
        pytest.param("fail", True, False, FC, id="fail-corrected"),
        pytest.param("fail", True, True, FC, id="fail-corrected-with-note"),
    ],
)
def test_record_kind_classifies_label_and_effort(
    label: str, correction: bool, note: bool, expected: RecordKind
) -> None:
    assert record_kind(label, correction, note) is expected


def test_record_kind_unknown_label_names_field() -> None:
    with pytest.raises(InvalidValueError) as caught:
        record_kind("meh", False, False)
    assert caught.value.field == "label"


@pytest.mark.parametrize(
    ("mode", "name", "expected"),
    [
        pytest.param("username", "ada", "ada", id="username"),
        pytest.param("pseudonym", "Night Owl", "Night Owl", id="pseudonym"),
        pytest.param("anonymous", None, ANONYMOUS_PAYEE, id="anonymous"),
        pytest.param("anonymous", "ada", ANONYMOUS_PAYEE, id="anonymous-ignores-a-stray-name"),
    ],
)
def test_payee_for_each_attribution_mode(mode: str, name: str | None, expected: str) -> None:
    assert payee_for(mode, name) == expected


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        pytest.param("public", "ada", id="unknown-mode"),
        pytest.param("username", None, id="username-without-name"),
        pytest.param("pseudonym", "", id="empty-pseudonym"),
        pytest.param("pseudonym", "anonymous-0123abcd", id="name-posing-as-anonymous"),
        pytest.param("pseudonym", "Anonymous Contributors", id="name-posing-as-the-anonymous-line"),
    ],
)
def test_payee_for_refusals_name_field(mode: str, name: str | None) -> None:
    with pytest.raises(InvalidValueError) as caught:
        payee_for(mode, name)
    assert caught.value.field == "attribution"


def test_payee_for_anonymous_records_of_different_members_share_one_line() -> None:
    """Nothing in a public ledger tells anonymous members apart or ties them to a name."""
    assert payee_for("anonymous", None) == payee_for("anonymous", None) == ANONYMOUS_PAYEE


def test_regroup_merges_lines_and_keeps_the_exact_sum() -> None:
    fine = compute_payouts(
        "v1",
        _records(("ada|ada", G), ("ada|anon", FC), ("bob|anon", G), ("bob|owl", GA)),
        amount="100.01",
        currency="EUR",
        split=PayoutSplit(),
    )
    pairs = [line.payee for line in fine.lines if line.kind is LineKind.CONTRIBUTOR]
    public = regroup(fine, {p: p.split("|")[1] for p in pairs})
    members = regroup(fine, {p: p.split("|")[0] for p in pairs})
    for ledger in (public, members):
        assert ledger.total_minor() == fine.amount_minor == 10001
        assert sum(line.records for line in ledger.lines) == 4
    assert {line.payee for line in public.lines} == {"commons", "ada", "anon", "owl"}
    assert {line.payee for line in members.lines} == {"commons", "ada", "bob"}
    by_pair = {line.payee: line.amount_minor for line in fine.lines}
    (anon,) = [line for line in public.lines if line.payee == "anon"]
    assert anon.amount_minor == by_pair["ada|anon"] + by_pair["bob|anon"]
    with pytest.raises(InvalidValueError):
        regroup(fine, {})


# --- amounts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        pytest.param("1000", "EUR", (100000, 2), id="whole"),
        pytest.param("1000.00", "EUR", (100000, 2), id="two-places"),
        pytest.param("1000.5", "EUR", (100050, 2), id="one-place"),
        pytest.param("0.01", "USD", (1, 2), id="one-cent"),
        pytest.param("1000", "JPY", (1000, 0), id="yen-no-places"),
        pytest.param("10.125", "KWD", (10125, 3), id="dinar-three-places"),
        pytest.param("007", "EUR", (700, 2), id="leading-zeros"),
    ],
)
def test_parse_amount_valid(text: str, currency: str, expected: tuple[int, int]) -> None:
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "field"),
    [
        pytest.param("1000", "XYZ", "currency", id="unknown-currency"),
        pytest.param("1000", "eur", "currency", id="lowercase-currency"),
        pytest.param("-5", "EUR", "amount", id="negative"),
        pytest.param("0", "EUR", "amount", id="zero"),
        pytest.param("0.00", "EUR", "amount", id="zero-with-places"),
        pytest.param("1000.001", "EUR", "amount", id="too-many-places"),
        pytest.param("1000.0", "JPY", "amount", id="places-for-yen"),
        pytest.param("abc", "EUR", "amount", id="not-a-number"),
        pytest.param("", "EUR", "amount", id="empty"),
        pytest.param("NaN", "EUR", "amount", id="nan"),
        pytest.param("Infinity", "EUR", "amount", id="infinity"),
        pytest.param("1e3", "EUR", "amount", id="exponent"),
        pytest.param("+5", "EUR", "amount", id="plus-sign"),
        pytest.param(" 5", "EUR", "amount", id="leading-space"),
        pytest.param("1_000", "EUR", "amount", id="underscore"),
        pytest.param("1,000.00", "EUR", "amount", id="thousands-separator"),
        pytest.param("5.", "EUR", "amount", id="trailing-point"),
        pytest.param(".5", "EUR", "amount", id="leading-point"),
        pytest.param("\u0665", "EUR", "amount", id="non-ascii-digit"),
        pytest.param("9" * 20, "EUR", "amount", id="too-large"),
    ],
)
def test_parse_amount_refusals_name_field(text: str, currency: str, field: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_amount(text, currency)
    assert caught.value.field == field


def test_currency_minor_units_cover_the_listed_exponents() -> None:
    assert CURRENCY_MINOR_UNITS["EUR"] == 2
    assert CURRENCY_MINOR_UNITS["JPY"] == 0
    assert CURRENCY_MINOR_UNITS["KWD"] == 3
    assert set(CURRENCY_MINOR_UNITS.values()) == {0, 2, 3}


# --- splits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param(
            {"contributors_bp": -1, "commons_bp": 10001}, "payout.contributors_bp", id="negative-bp"
        ),
        pytest.param(
            {"contributors_bp": 10001, "commons_bp": -1}, "payout.contributors_bp", id="bp-over-100"
        ),
        pytest.param({"contributors_bp": 10000, "commons_bp": 10001}, "payout.commons_bp", id="commons-over"),
        pytest.param({"contributors_bp": 7000, "commons_bp": 2000}, "payout.commons_bp", id="sum-under-100"),
        pytest.param({"contributors_bp": 7000, "commons_bp": 3001}, "payout.commons_bp", id="sum-over-100"),
        pytest.param({"contributors_bp": True, "commons_bp": 9999}, "payout.contributors_bp", id="bool-bp"),
        pytest.param({"weights": {"good": -1}}, "payout.weights.good", id="negative-weight"),
        pytest.param({"weights": {"fail": 10**6 + 1}}, "payout.weights.fail", id="huge-weight"),
        pytest.param({"weights": {"fail": False}}, "payout.weights.fail", id="bool-weight"),
        pytest.param({"weights": {"great": 1}}, "payout.weights", id="unknown-kind"),
        pytest.param({"rounding": "bankers"}, "payout.rounding", id="unknown-rounding"),
    ],
)
def test_payout_split_refusals_name_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        PayoutSplit(**kwargs)
    assert caught.value.field == field


def test_payout_split_decoded_from_json_is_validated() -> None:
    with pytest.raises(InvalidValueError) as caught:
        msgspec.json.decode(b'{"contributors_bp": 6000, "commons_bp": 3000}', type=PayoutSplit)
    assert caught.value.field == "payout.commons_bp"


def test_payout_split_defaults_are_70_30_with_effort_weights() -> None:
    split = PayoutSplit()
    assert (split.contributors_bp, split.commons_bp) == (7000, 3000)
    assert [split.weight_of(k) for k in (G, F, FC, GA)] == [1, 1, 3, 2]
    assert split.rounding is Rounding.LARGEST_REMAINDER


def test_payout_split_missing_kind_takes_its_default_weight() -> None:
    split = PayoutSplit(weights={"good": 5})
    assert split.weight_of(G) == 5
    assert split.weight_of(FC) == 3


# --- compute_payouts -------------------------------------------------------------------

THREE_EQUAL = _records(("ada", G), ("bob", G), ("cy", G))
ONE_TWO_THREE = _records(("ada", G), ("bob", GA), ("cy", FC))
TO_COMMONS = PayoutSplit(rounding=Rounding.REMAINDER_TO_COMMONS)

COMPUTE_CASES = [
    pytest.param(
        THREE_EQUAL,
        "1000.00",
        "EUR",
        PayoutSplit(),
        [_commons("300.00"), _c("ada", "233.34"), _c("bob", "233.33"), _c("cy", "233.33")],
        id="eur-70-30-thirds-tie-goes-to-first-payee",
    ),
    pytest.param(
        THREE_EQUAL[::-1],
        "1000.00",
        "EUR",
        PayoutSplit(),
        [_commons("300.00"), _c("ada", "233.34"), _c("bob", "233.33"), _c("cy", "233.33")],
        id="eur-70-30-thirds-tie-ignores-input-order",
    ),
    pytest.param(
        ONE_TWO_THREE,
        "1000.00",
        "EUR",
        PayoutSplit(),
        [_commons("300.00"), _c("cy", "350.00"), _c("bob", "233.33"), _c("ada", "116.67")],
        id="eur-70-30-sixths-largest-remainder-wins",
    ),
    pytest.param(
        THREE_EQUAL,
        "1000",
        "JPY",
        PayoutSplit(),
        [_commons("300"), _c("ada", "234"), _c("bob", "233"), _c("cy", "233")],
        id="jpy-no-minor-unit",
    ),
    pytest.param(
        THREE_EQUAL,
        "10",
        "KWD",
        PayoutSplit(),
        [_commons("3.000"), _c("ada", "2.334"), _c("bob", "2.333"), _c("cy", "2.333")],
        id="kwd-three-places",
    ),
    pytest.param(
        THREE_EQUAL,
        "1000",
        "JPY",
        TO_COMMONS,
        [_commons("301"), _c("ada", "233"), _c("bob", "233"), _c("cy", "233")],
        id="remainder-to-commons",
    ),
    pytest.param(
        _records(("ada", G)),
        "0.05",
        "EUR",
        PayoutSplit(),
        [_commons("0.01"), _c("ada", "0.04")],
        id="equal-remainders-go-to-larger-exact-share",
    ),
    pytest.param(
        _records(("ada", G, True), ("bob", FC, True)),
        "500.00",
        "EUR",
        PayoutSplit(),
        [_commons("500.00")],
        id="all-withdrawn-all-to-commons",
    ),
    pytest.param([], "500.00", "EUR", PayoutSplit(), [_commons("500.00")], id="no-records-all-to-commons"),
    pytest.param(
        THREE_EQUAL,
        "90.00",
        "EUR",
        PayoutSplit(weights={"good": 0}),
        [_commons("90.00"), _c("ada", "0.00"), _c("bob", "0.00"), _c("cy", "0.00")],
        id="all-weights-zero-all-to-commons-lines-still-shown",
    ),
    pytest.param(
        _records(("ada", G), ("bob", F)),
        "100.00",
        "EUR",
        PayoutSplit(weights={"fail": 0}),
        [_commons("30.00"), _c("ada", "70.00"), _c("bob", "0.00")],
        id="zero-weight-payee-gets-a-zero-line",
    ),
    pytest.param(
        _records(("ada", G), ("ada", G, True), ("bob", G)),
        "100.00",
        "EUR",
        PayoutSplit(),
        [_commons("30.00"), _c("ada", "35.00"), _c("bob", "35.00")],
        id="withdrawn-record-earns-nothing",
    ),
    pytest.param(
        _records(("ada", G), ("anonymous-0123abcd", G), ("anonymous-0123abcd", G), ("anonymous-99ff00ee", G)),
        "100.00",
        "EUR",
        PayoutSplit(),
        [
            _commons("30.00"),
            _c("anonymous-0123abcd", "35.00"),
            _c("ada", "17.50"),
            _c("anonymous-99ff00ee", "17.50"),
        ],
        id="anonymous-records-grouped-by-payee-only",
    ),
    pytest.param(
        _records(("commons", G), ("ada", G)),
        "100.00",
        "EUR",
        PayoutSplit(),
        [_commons("30.00"), _c("ada", "35.00"), _c("commons", "35.00")],
        id="contributor-named-commons-stays-separate",
    ),
    pytest.param(
        THREE_EQUAL,
        "100.00",
        "EUR",
        PayoutSplit(contributors_bp=10000, commons_bp=0),
        [_commons("0.00"), _c("ada", "33.34"), _c("bob", "33.33"), _c("cy", "33.33")],
        id="no-commons-share-commons-line-still-shown",
    ),
    pytest.param(
        THREE_EQUAL,
        "100.00",
        "EUR",
        PayoutSplit(contributors_bp=10000, commons_bp=0, rounding=Rounding.REMAINDER_TO_COMMONS),
        [_commons("0.01"), _c("ada", "33.33"), _c("bob", "33.33"), _c("cy", "33.33")],
        id="no-commons-share-remainder-still-to-commons",
    ),
]


@pytest.mark.parametrize(("records", "amount", "currency", "split", "expected"), COMPUTE_CASES)
def test_compute_payouts_named_cases(
    records: list[PayoutRecord],
    amount: str,
    currency: str,
    split: PayoutSplit,
    expected: list[tuple[LineKind, str, str]],
) -> None:
    ledger = compute_payouts("2025-06", records, amount=amount, currency=currency, split=split)
    assert _amounts(ledger) == expected
    assert ledger.total_minor() == ledger.amount_minor


def test_compute_payouts_ledger_counts_records_and_weights() -> None:
    records = _records(("ada", G), ("ada", FC), ("bob", GA), ("bob", F, True))
    ledger = compute_payouts("r1", records, amount="1000", currency="EUR", split=PayoutSplit())
    assert (ledger.records, ledger.excluded_withdrawn) == (3, 1)
    assert (ledger.amount, ledger.amount_minor, ledger.exponent) == ("1000.00", 100000, 2)
    by_payee = {(line.kind, line.payee): (line.records, line.weight) for line in ledger.lines}
    assert by_payee == {
        COMMONS: (0, 0),
        (LineKind.CONTRIBUTOR, "ada"): (2, 4),
        (LineKind.CONTRIBUTOR, "bob"): (1, 2),
    }


def test_compute_payouts_accepts_a_generator() -> None:
    ledger = compute_payouts(
        "r1", (r for r in THREE_EQUAL), amount="1000", currency="JPY", split=PayoutSplit()
    )
    assert ledger.total_minor() == 1000


@pytest.mark.parametrize(
    ("release", "records", "amount", "currency", "field"),
    [
        pytest.param("", THREE_EQUAL, "1", "EUR", "release", id="no-release"),
        pytest.param("r", THREE_EQUAL, "1.001", "EUR", "amount", id="bad-amount"),
        pytest.param("r", THREE_EQUAL, "1", "XXX", "currency", id="bad-currency"),
        pytest.param("r", _records(("ada", G)) * 2, "1", "EUR", "records", id="duplicate-uid"),
        pytest.param("r", [PayoutRecord("r0", "ada", "great")], "1", "EUR", "records.kind", id="bad-kind"),  # type: ignore[arg-type]
    ],
)
def test_compute_payouts_refusals_name_field(
    release: str, records: list[PayoutRecord], amount: str, currency: str, field: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        compute_payouts(release, records, amount=amount, currency=currency, split=PayoutSplit())
    assert caught.value.field == field


def test_payout_ledger_to_csv_exact_text() -> None:
    records = _records(("ada", G), ("Smith, Jo", GA), ("=HYPERLINK(1)", G), ("commons", G, True))
    ledger = compute_payouts("r1", records, amount="100", currency="EUR", split=PayoutSplit())
    assert ledger.to_csv() == (
        "payee,kind,records,weight,amount,currency\r\n"
        "commons,commons,0,0,30.00,EUR\r\n"
        '"Smith, Jo",contributor,1,2,35.00,EUR\r\n'
        "'=HYPERLINK(1),contributor,1,1,17.50,EUR\r\n"
        "ada,contributor,1,1,17.50,EUR\r\n"
    )


def test_payout_ledger_encodes_canonically_and_round_trips() -> None:
    ledger = compute_payouts("r1", ONE_TWO_THREE, amount="1000", currency="EUR", split=PayoutSplit())
    data = canonical_bytes(ledger)
    assert msgspec.json.decode(data, type=PayoutLedger) == ledger
