"""Arithmetic the built-in evaluators share: score histograms, counts, exact pairwise shares.

Kept apart from :mod:`coop.eval.evaluators` (the registry) and :mod:`coop.eval.lm` (the language
model) so that both can use it without importing each other.  Pure integers in, one division out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

__all__ = [
    "HIST_FAIL",
    "HIST_GOOD",
    "SCORE_BINS",
    "count",
    "expect_model",
    "pairwise_share",
    "ratio",
]

_M = TypeVar("_M")

SCORE_BINS: Final = 1000


def _bin_keys(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{k:03d}" for k in range(SCORE_BINS))


HIST_GOOD: Final = _bin_keys("hist_good")
HIST_FAIL: Final = _bin_keys("hist_fail")


def count(stats: Mapping[str, int], key: str) -> int:
    """A statistic as a count: missing counts as zero, and so does anything below zero."""
    value = stats.get(key, 0)
    return value if value > 0 else 0


def ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is zero (correctly rounded)."""
    return numerator / denominator if denominator > 0 else 0.0


def pairwise_share(stats: Mapping[str, int], winners: Iterable[str], losers: Iterable[str]) -> float:
    """Share of (winner-class, loser-class) record pairs whose winner sits in a later bin.

    Both key sequences list the bins from worst to best; a pair in the same
    bin counts half.  Computed exactly in integers and divided once; 0.5
    (chance) when either class is empty.
    """
    below = 0  # loser-class records in strictly earlier bins
    twice = 0  # twice the number of won pairs, ties counting one
    total_winners = total_losers = 0
    for win_key, lose_key in zip(winners, losers, strict=True):
        w, lo = count(stats, win_key), count(stats, lose_key)
        twice += w * (2 * below + lo)
        below += lo
        total_winners += w
        total_losers += lo
    pairs = total_winners * total_losers
    return twice / (2 * pairs) if pairs else 0.5


def expect_model(model: object, kind: type[_M], evaluator: str) -> _M:
    """``model`` if it is what ``evaluator``'s load() returns; a TypeError (a caller's bug) if not."""
    if not isinstance(model, kind):
        raise TypeError(f"{evaluator} was handed a {type(model).__name__}, not a model its load() returned")
    return model
