"""Privacy guards a node applies to its answer: discrete noise on the statistics and a budget per requester.

Flower's SecAgg+ and DP wrappers cover training updates, not evaluation
metrics, so the noise here is the node's own.  The statistics are integers,
so the noise is integer too, drawn by the exact samplers of Canonne, Kamath
and Steinke ("The Discrete Gaussian for Differential Privacy", 2020) with
integer and :class:`~fractions.Fraction` arithmetic only: no floating point
(whose rounding leaks, Mironov 2012) and, in the node, no Mersenne Twister:
the randomness is :func:`secrets.randbelow` (:class:`SystemRandomness`).
Tests inject :class:`SeededRandomness`.

Statistics form groups: every ``hist_*`` key is one group (one record lands
in exactly one bin, so adding or removing a record moves the whole histogram
by at most 1 in L1), every other key its own group.  The answer's epsilon is
split evenly over the ``g`` groups (basic composition); each key gets
**discrete Laplace** noise of scale ``b = g * sensitivity / epsilon``
(``P(k) ∝ exp(-|k| / b)``: pure epsilon-DP for the whole answer) or
**discrete Gaussian** noise with ``sigma = sqrt(2 ln(1.25/delta)) * b``
(the classic calibration; approximate DP).  Results are clipped at zero so
they stay counts (post-processing: it costs no privacy, but biases small
counts upwards).
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Mapping
from fractions import Fraction
from typing import Final, Protocol

from coop.governance import NoiseKind

__all__ = [
    "DELTA",
    "Randomness",
    "SeededRandomness",
    "SystemRandomness",
    "add_noise",
    "budget_left",
    "discrete_gaussian",
    "discrete_laplace",
    "discrete_laplace_pmf",
    "laplace_scale",
]

DELTA: Final = 1e-5
# sigma^2 of the Gaussian is 2 ln(1.25/delta) b^2; the logarithm is rounded *up* to this rational,
# so the noise is never weaker than the calibration says.
_TWO_LN_125_OVER_DELTA: Final = Fraction(math.ceil(2 * math.log(1.25 / DELTA) * 10**9), 10**9)


class Randomness(Protocol):
    """A source of uniform integers: ``randbelow(n)`` is uniform over ``0 .. n-1``."""

    def randbelow(self, n: int, /) -> int: ...


class SystemRandomness:
    """The operating system's cryptographic generator (what a node uses)."""

    def randbelow(self, n: int, /) -> int:
        return secrets.randbelow(n)


class SeededRandomness:
    """A reproducible source for tests (Mersenne Twister: never for real answers)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def randbelow(self, n: int, /) -> int:
        return self._rng.randrange(n)


def _bernoulli(p: Fraction, rng: Randomness) -> bool:
    """True with probability exactly ``p`` (0 <= p <= 1)."""
    return rng.randbelow(p.denominator) < p.numerator


def _bernoulli_exp(gamma: Fraction, rng: Randomness) -> bool:
    """True with probability exactly ``exp(-gamma)`` (gamma >= 0); CKS 2020, Algorithm 1."""
    while gamma > 1:
        # exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))), one trial at a time.
        if not _bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng: Randomness) -> int:
    """An integer ``k`` with ``P(k) ∝ exp(-|k| / scale)``; CKS 2020, Algorithm 2 (scale = t/s)."""
    if scale <= 0:
        raise ValueError("the scale of discrete Laplace noise must be positive")
    t, s = scale.numerator, scale.denominator
    while True:
        u = rng.randbelow(t)
        if not _bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1), rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randbelow(2) == 1
        if negative and y == 0:
            continue  # zero would be counted twice
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction, rng: Randomness) -> int:
    """An integer ``k`` with ``P(k) ∝ exp(-k^2 / (2 sigma2))``; CKS 2020, Algorithm 3."""
    if sigma2 <= 0:
        raise ValueError("the variance of discrete Gaussian noise must be positive")
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1  # floor(sigma) + 1
    while True:
        y = discrete_laplace(Fraction(t), rng)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bernoulli_exp(gamma, rng):
            return y


def discrete_laplace_pmf(scale: Fraction, k: int) -> float:
    """The exact probability of ``k`` under :func:`discrete_laplace` (for tests and documentation)."""
    q = math.exp(-1 / float(scale))
    return (1 - q) / (1 + q) * q ** abs(k)


def laplace_scale(*, groups: int, sensitivity: int, epsilon_milli: int) -> Fraction:
    """``b = groups * sensitivity / epsilon``: the scale that makes each group's share epsilon/groups-DP."""
    return Fraction(groups * max(sensitivity, 1) * 1000, epsilon_milli)


def add_noise(
    statistics: Mapping[str, int],
    sensitivity: Mapping[str, int],
    *,
    kind: NoiseKind,
    epsilon_milli: int,
    rng: Randomness,
) -> dict[str, int]:
    """The statistics with the co-op's noise added (unchanged for ``NoiseKind.NONE``); integers >= 0."""
    if kind is NoiseKind.NONE:
        return dict(statistics)
    if epsilon_milli <= 0:
        raise ValueError("noise needs a positive epsilon")
    groups: dict[str, int] = {}
    for key in statistics:
        group = _group(key)
        groups[group] = max(groups.get(group, 1), sensitivity.get(key, 1))
    g = max(len(groups), 1)
    noisy: dict[str, int] = {}
    for key, value in statistics.items():
        scale = laplace_scale(groups=g, sensitivity=groups[_group(key)], epsilon_milli=epsilon_milli)
        if kind is NoiseKind.LAPLACE:
            delta = discrete_laplace(scale, rng)
        else:
            delta = discrete_gaussian(_TWO_LN_125_OVER_DELTA * scale * scale, rng)
        noisy[key] = max(0, int(value) + delta)
    return noisy


def _group(key: str) -> str:
    return "hist" if key.startswith("hist_") else key


def budget_left(budget_milli: int, spent_milli: int, cost_milli: int) -> bool:
    """Whether one more answer fits in the requester's budget."""
    return spent_milli + cost_milli <= budget_milli
