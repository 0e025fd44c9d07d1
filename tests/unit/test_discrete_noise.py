"""Discrete noise from a cryptographic source, and the privacy budget per requester (issue 11, item 22).

The samplers are Canonne-Kamath-Steinke's exact ones over integers and
Fractions; here their empirical distributions are held to the exact pmf by a
chi-square test (fixed seeds, bounded samples, critical value at alpha=0.001).
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from coop.eval import (
    Decline,
    Filters,
    SeededRandomness,
    SystemRandomness,
    add_noise,
    build_label_agreement_model,
    build_request,
    discrete_gaussian,
    discrete_laplace,
    get_evaluator,
    open_attestation,
)
from coop.eval.privacy import discrete_laplace_pmf, laplace_scale
from coop.governance import NoiseKind
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

SAMPLES = 20_000
# chi2.ppf(0.999, df): a correct sampler fails one seed in a thousand; these seeds are fixed.
CRITICAL = {14: 36.12327368039813, 18: 42.31239633167996}


class _OnlyRandbelow:
    """A source with nothing but ``randbelow``, that refuses anything but positive integer bounds."""

    def __init__(self, seed: int) -> None:
        self.inner = SeededRandomness(seed)
        self.calls = 0

    def randbelow(self, n: int, /) -> int:
        assert type(n) is int and n > 0, n
        self.calls += 1
        return self.inner.randbelow(n)


def _chi_square(samples: list[int], pmf: Callable[[int], float], edge: int) -> tuple[float, int]:
    """Pearson's statistic over bins -edge..edge and the two tails beyond; and its degrees of freedom."""
    counts = Counter(max(-edge - 1, min(edge + 1, k)) for k in samples)
    inner = {k: pmf(k) for k in range(-edge, edge + 1)}
    tail = (1.0 - sum(inner.values())) / 2  # both pmfs are symmetric
    expected = {**inner, -edge - 1: tail, edge + 1: tail}
    n = len(samples)
    statistic = sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in expected.items())
    return statistic, len(expected) - 1


def test_discrete_laplace_matches_its_exact_pmf() -> None:
    seed = 20_261_122
    print(f"seed {seed}")
    rng = _OnlyRandbelow(seed)
    scale = Fraction(3, 2)
    samples = [discrete_laplace(scale, rng) for _ in range(SAMPLES)]
    assert all(type(k) is int for k in samples)
    statistic, df = _chi_square(samples, lambda k: discrete_laplace_pmf(scale, k), edge=8)
    assert statistic < CRITICAL[df], (statistic, df)


def test_discrete_laplace_is_symmetric_around_zero() -> None:
    rng = SeededRandomness(7)
    samples = [discrete_laplace(Fraction(5), rng) for _ in range(SAMPLES)]
    above = sum(1 for k in samples if k > 0)
    below = sum(1 for k in samples if k < 0)
    # Binomial(above + below, 1/2): five standard deviations either way
    spread = 5 * math.sqrt((above + below) / 4)
    assert abs(above - below) / 2 < spread
    # the variance of discrete Laplace noise of scale b is about 2 b^2: the mean is near zero
    assert abs(sum(samples) / SAMPLES) < 5 * math.sqrt(2 * 25 / SAMPLES)


def test_discrete_gaussian_matches_its_exact_pmf() -> None:
    seed = 4_242
    print(f"seed {seed}")
    sigma2 = Fraction(4)
    weights = {k: math.exp(-(k * k) / 8) for k in range(-80, 81)}
    total = sum(weights.values())
    samples = [discrete_gaussian(sigma2, _OnlyRandbelow(seed + i)) for i in range(SAMPLES)]
    assert all(type(k) is int for k in samples)
    statistic, df = _chi_square(samples, lambda k: weights[k] / total, edge=6)
    assert statistic < CRITICAL[df], (statistic, df)


@pytest.mark.parametrize(
    ("sensitivity", "epsilon_milli", "scale"),
    [(1, 1000, Fraction(1)), (1, 100, Fraction(10)), (4, 1000, Fraction(4)), (3, 500, Fraction(6))],
)
def test_laplace_scale_is_sensitivity_over_epsilon(
    sensitivity: int, epsilon_milli: int, scale: Fraction
) -> None:
    assert laplace_scale(groups=1, sensitivity=sensitivity, epsilon_milli=epsilon_milli) == scale
    assert laplace_scale(groups=3, sensitivity=sensitivity, epsilon_milli=epsilon_milli) == 3 * scale


@pytest.mark.parametrize("kind", [NoiseKind.LAPLACE, NoiseKind.GAUSSIAN])
def test_add_noise_spread_grows_with_sensitivity_over_epsilon(kind: NoiseKind) -> None:
    def spread(sensitivity: int, epsilon_milli: int) -> float:
        rng = SeededRandomness(11)
        stats = {"n": 10_000}
        values = [
            add_noise(stats, {"n": sensitivity}, kind=kind, epsilon_milli=epsilon_milli, rng=rng)["n"]
            - 10_000
            for _ in range(400)
        ]
        return sum(abs(v) for v in values) / len(values)

    base = spread(1, 1000)
    assert spread(1, 100) > 4 * base  # ten times the scale
    assert spread(10, 1000) > 4 * base
    assert base > 0


@pytest.mark.parametrize("kind", [NoiseKind.LAPLACE, NoiseKind.GAUSSIAN])
def test_add_noise_keeps_integer_counts_for_every_key(kind: NoiseKind) -> None:
    evaluator = get_evaluator("label-agreement")
    sensitivity = evaluator.statistic_sensitivity()
    stats = dict.fromkeys(sensitivity, 3)
    rng = _OnlyRandbelow(5)
    noisy = add_noise(stats, sensitivity, kind=kind, epsilon_milli=500, rng=rng)
    assert noisy.keys() == stats.keys()
    assert all(type(v) is int and v >= 0 for v in noisy.values())
    assert noisy != stats
    assert rng.calls > 0  # the only randomness is the injected randbelow


def test_add_noise_none_changes_nothing() -> None:
    stats = {"n": 5, "tp": 2}
    assert add_noise(stats, {}, kind=NoiseKind.NONE, epsilon_milli=1000, rng=SeededRandomness(1)) == stats


def test_system_randomness_is_the_secrets_module() -> None:
    values = {SystemRandomness().randbelow(1 << 64) for _ in range(8)}
    assert len(values) > 1
    assert all(0 <= v < 1 << 64 for v in values)


# -- at the node -------------------------------------------------------------------------------

ADMIN = Actor("ada", admin=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    for i in range(12):
        good = i % 2 == 0
        contribute(
            node,
            member,
            text=f"User: q {i}?\nAssistant: a {i}, {'thanks correct' if good else 'wrong broken'}",
            label="good" if good else "fail",
        )
    process(node)
    node.change_settings(
        {
            "eval_policy.min_records": 5,
            "eval_policy.noise": "laplace",
            "eval_policy.epsilon_milli": 1000,
            "eval_policy.budget_milli": 2500,
        },
        actor=ADMIN,
    )
    try:
        yield node
    finally:
        node.close()


MODEL = build_label_agreement_model([("thanks correct", True), ("wrong broken", False)] * 10, dim=256, seed=1)


def _request(node: Node, seed: bytes) -> bytes:
    return build_request(
        signer=Signer(seed),
        task="label-agreement",
        model_name="m.npz",
        artifact=MODEL,
        targets=[node.identity.node_id],
        purpose="test",
        filters=Filters(),
        now=node.now(),
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )


def test_node_noise_comes_from_the_cryptographic_source(node: Node) -> None:
    assert isinstance(node.evaluation.rng, SystemRandomness)
    answer = node.evaluation.answer(_request(node, bytes(32)), MODEL)
    assert answer.attestation is not None
    attestation, ok = open_attestation(answer.attestation.encode())
    assert ok
    assert attestation.noise.kind == "laplace"
    assert all(type(v) is int and v >= 0 for v in attestation.statistics.values())
    assert attestation.records == attestation.statistics["n"]


def test_node_budget_is_per_requester_and_runs_out(node: Node) -> None:
    first, second = bytes(32), bytes([9]) * 32
    assert node.evaluation.answer(_request(node, first), MODEL).decline is None
    assert node.evaluation.answer(_request(node, first), MODEL).decline is None
    assert node.evaluation.answer(_request(node, first), MODEL).decline is Decline.BUDGET_SPENT
    assert node.evaluation.answer(_request(node, second), MODEL).decline is None  # another requester


def test_node_budget_is_checked_in_the_transaction_that_spends_it(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two answers racing for the last of a budget: both read 'nothing spent' before either writes."""
    seed = bytes(32)
    monkeypatch.setattr(node.evaluation, "_spent", lambda requester: 0)  # a stale read, as in a race
    answers = [node.evaluation.answer(_request(node, seed), MODEL).decline for _ in range(3)]
    assert answers == [None, None, Decline.BUDGET_SPENT]
