"""Privacy guards a node applies to its answer: noise on the statistics and a budget per requester.

Flower's SecAgg+ and DP wrappers cover training updates, not evaluation
metrics, so the noise here is the node's own.  Statistics form groups: every
``hist_*`` key is one group (one record lands in exactly one bin, so the
whole histogram moves by at most 1 in L1), every other key its own group.
The budget is split evenly over the ``g`` groups (basic composition); each
key gets Laplace noise of scale ``g * sensitivity / epsilon`` or Gaussian
noise with ``sigma = sqrt(2 ln(1.25/delta)) * g * sensitivity / epsilon``,
``sensitivity`` being its group's.  Results are rounded and clipped at zero
so they stay counts (which biases small counts upwards: noise is for
protection, not for precision).  Randomness is passed in.
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
    groups: dict[str, int] = {}
    for key in statistics:
        group = _group(key)
        groups[group] = max(groups.get(group, 1), sensitivity.get(key, 1))
    g = max(len(groups), 1)
    noisy: dict[str, int] = {}
    for key, value in statistics.items():
        scale = g * groups[_group(key)] / epsilon
        if kind is NoiseKind.LAPLACE:
            delta = _laplace(rng, scale)
        else:
            delta = rng.gauss(0.0, math.sqrt(2 * math.log(1.25 / DELTA)) * scale)
        noisy[key] = max(0, round(value + delta))
    return noisy


def _group(key: str) -> str:
    return "hist" if key.startswith("hist_") else key


def budget_left(budget_milli: int, spent_milli: int, cost_milli: int) -> bool:
    """Whether one more answer fits in the requester's budget."""
    return spent_milli + cost_milli <= budget_milli
