"""The serving rules of files: byte ranges and preconditions (RFC 9110 §13, §14), as a table."""

from __future__ import annotations

import pytest

from coop.node.files import Answer, ByteRange, evaluate_request, parse_range

SIZE = 1000
TAG = '"abc"'
MODIFIED = 1_700_000_000
DATE_AT = "Tue, 14 Nov 2023 22:13:20 GMT"  # == MODIFIED
DATE_BEFORE = "Tue, 14 Nov 2023 22:13:19 GMT"

RANGES = [
    ("bytes=0-9", ByteRange(0, 9, SIZE)),
    ("bytes=990-", ByteRange(990, 999, SIZE)),
    ("bytes=-10", ByteRange(990, 999, SIZE)),
    ("bytes=-5000", ByteRange(0, 999, SIZE)),
    ("bytes=500-99999", ByteRange(500, 999, SIZE)),
    ("BYTES = 1-1", ByteRange(1, 1, SIZE)),
    ("bytes=1000-", ByteRange(SIZE, SIZE - 1, SIZE)),  # unsatisfiable
    ("bytes=-0", ByteRange(SIZE, SIZE - 1, SIZE)),  # unsatisfiable
    ("bytes=" + "9" * 40 + "-", ByteRange(SIZE, SIZE - 1, SIZE)),  # huge: beyond the end, no crash
    ("bytes=5-1", None),  # invalid: whole file
    ("bytes=0-1,4-5", None),  # several: whole file
    ("items=0-1", None),
    ("bytes=a-b", None),
    ("bytes=\u0661-2", None),  # non-ASCII digits are not digits here
    ("bytes=", None),
]


@pytest.mark.parametrize(("header", "expected"), RANGES, ids=[r[0][:30] for r in RANGES])
def test_file_ranges_parse_range_table(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


def test_file_ranges_an_empty_file_is_always_whole() -> None:
    assert parse_range("bytes=0-0", 0) is None


def test_file_ranges_content_range_of_both_kinds() -> None:
    assert ByteRange(0, 9, SIZE).content_range() == "bytes 0-9/1000"
    assert ByteRange(SIZE, SIZE - 1, SIZE).content_range() == "bytes */1000"


PLANS = [
    ({}, Answer.FULL),
    ({"range": "bytes=0-1"}, Answer.PARTIAL),
    ({"range": "bytes=2000-"}, Answer.UNSATISFIABLE),
    ({"if-none-match": TAG}, Answer.NOT_MODIFIED),
    ({"if-none-match": f'"x", W/{TAG}'}, Answer.NOT_MODIFIED),  # weak comparison
    ({"if-none-match": "*"}, Answer.NOT_MODIFIED),
    ({"if-none-match": '"other"'}, Answer.FULL),
    ({"if-none-match": '"other"', "if-modified-since": DATE_AT}, Answer.FULL),  # INM wins
    ({"if-modified-since": DATE_AT}, Answer.NOT_MODIFIED),
    ({"if-modified-since": DATE_BEFORE}, Answer.FULL),
    ({"if-modified-since": "not a date"}, Answer.FULL),
    ({"if-match": '"other"'}, Answer.PRECONDITION_FAILED),
    ({"if-match": f"W/{TAG}"}, Answer.PRECONDITION_FAILED),  # strong comparison
    ({"if-match": TAG, "range": "bytes=0-1"}, Answer.PARTIAL),
    ({"if-unmodified-since": DATE_BEFORE}, Answer.PRECONDITION_FAILED),
    ({"range": "bytes=0-1", "if-range": TAG}, Answer.PARTIAL),
    ({"range": "bytes=0-1", "if-range": '"stale"'}, Answer.FULL),
    ({"range": "bytes=0-1", "if-range": f"W/{TAG}"}, Answer.FULL),
    ({"range": "bytes=0-1", "if-range": DATE_AT}, Answer.PARTIAL),
    ({"range": "bytes=0-1", "if-range": DATE_BEFORE}, Answer.FULL),
]


@pytest.mark.parametrize(("headers", "answer"), PLANS, ids=[repr(h)[:60] for h, _ in PLANS])
def test_file_ranges_evaluate_request_table(headers: dict[str, str], answer: Answer) -> None:
    plan = evaluate_request(headers, etag=TAG, modified=MODIFIED, size=SIZE)
    assert plan.answer is answer
