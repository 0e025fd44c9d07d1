"""Privacy guards a node applies to its answer: noise on the statistics and a budget per requester.

Flower's SecAgg+ and DP wrappers cover training updates, not evaluation
metrics, so the noise here is the node's own.  Each statistic gets Laplace
noise of scale ``k * sensitivity / epsilon`` (the budget split evenly over
the ``k`` statistics, basic composition) or Gaussian noise with
``sigma = sqrt(2 ln(1.25/delta)) * k * sensitivity / epsilon``; results are
rounded and clipped at zero, so they stay counts.  Randomness is passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Final

from coop.governance import NoiseKind

__all__ = ["DELTA", "add_noise", "budget_left"]

DELTA: Final = 1e-5


def _laplace(rng: random.Random, scale: float) -> float:
    # The difference of two exponentials is Laplace-distributed.
    return rng.expovariate(1.0 / scale) - rng.expovariate(1.0 / scale)


def add_noise(
    statistics: Mapping[str, int],
    sensitivity: Mapping[str, int],
    *,
    kind: NoiseKind,
    epsilon_milli: int,
    rng: random.Random,
) -> dict[str, int]:
    """The statistics with the co-op's noise added (unchanged for ``NoiseKind.NONE``)."""
    if kind is NoiseKind.NONE:
        return dict(statistics)
    epsilon = epsilon_milli / 1000.0
    k = max(len(statistics), 1)
    noisy: dict[str, int] = {}
    for key, value in statistics.items():
        scale = k * max(sensitivity.get(key, 1), 1) / epsilon
        if kind is NoiseKind.LAPLACE:
            delta = _laplace(rng, scale)
        else:
            delta = rng.gauss(0.0, math.sqrt(2 * math.log(1.25 / DELTA)) * scale)
        noisy[key] = max(0, round(value + delta))
    return noisy


def budget_left(budget_milli: int, spent_milli: int, cost_milli: int) -> bool:
    """Whether one more answer fits in the requester's budget."""
    return spent_milli + cost_milli <= budget_milli
