"""Evaluator invariants: statistics add up over any partition, finalize stays finite, one record moves little."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from coop.eval.evaluators import (
    LABEL_AGREEMENT_FORMAT,
    Evaluator,
    LabelAgreement,
    LabelAgreementModel,
    LmPreference,
    build_label_agreement_model,
)
from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    EvalConsent,
    Label,
    License,
    Message,
    Provenance,
    Record,
    Role,
    Scope,
    Source,
)

WORDS = [
    "thanks",
    "great",
    "works",
    "wrong",
    "broken",
    "useless",
    "python",
    "the",
    "Ünïcode",
    "日本語",
    "a_b",
]
EVALUATOR = LabelAgreement()
BOUNDED = ("accuracy", "precision", "recall", "f1", "auc")


def make_record(messages: Sequence[tuple[Role, str]], label: Label) -> Record:
    return Record(
        uid="r",
        created_at=1_700_000_000,
        route=Channel.API,
        model=None,
        content=tuple(Message(role=role, content=text) for role, text in messages),
        label=label,
        license=License.CC0,
        ai_use="train-ai=n",
        eval=EvalConsent.YES,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        contributor_hash="0" * 64,
        scope=Scope.NODE,
        provenance=Provenance(
            source=Source.NATURAL, prompt_shown=False, format="text", checks=Checks(pii={}, content_sha256="")
        ),
    )


def _extreme_model() -> LabelAgreementModel:
    """Large random weights: scores at 0 and 1, losses past the 20-nat clip."""
    weights = np.random.default_rng(7).normal(scale=40.0, size=256)
    buffer = io.BytesIO()
    np.savez(buffer, weights=weights, bias=0.0, dim=256, format=LABEL_AGREEMENT_FORMAT)
    return EVALUATOR.load(buffer.getvalue())


_TRAINED = EVALUATOR.load(
    build_label_agreement_model(
        [("thanks great works", True), ("wrong broken useless", False), ("python the", True)] * 10, dim=2**8
    )
)
MODELS = st.sampled_from([_TRAINED, _extreme_model()])

texts = st.one_of(st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join), st.text(max_size=40))
records = st.builds(
    make_record,
    st.lists(st.tuples(st.sampled_from([Role.USER, Role.ASSISTANT, Role.SYSTEM]), texts), max_size=4),
    st.sampled_from(list(Label)),
)


def add(stats: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def assert_finite_metrics(metrics: Mapping[str, float]) -> None:
    assert all(math.isfinite(value) for value in metrics.values()), metrics
    assert all(0.0 <= metrics[name] <= 1.0 for name in BOUNDED if name in metrics), metrics


@given(MODELS, st.lists(records, max_size=20), st.data())
def test_label_agreement_statistics_add_up_over_any_partition(
    model: LabelAgreementModel, chats: list[Record], data: st.DataObject
) -> None:
    parts = data.draw(st.lists(st.integers(0, 4), min_size=len(chats), max_size=len(chats)))
    shards: list[list[Record]] = [[] for _ in range(5)]
    for chat, part in zip(chats, parts, strict=True):
        shards[part].append(chat)
    pooled = EVALUATOR.statistics(model, chats)
    federated = add(EVALUATOR.statistics(model, shard) for shard in shards)
    assert federated == pooled
    assert EVALUATOR.finalize(federated) == EVALUATOR.finalize(pooled)


@given(MODELS, st.lists(records, max_size=20))
def test_label_agreement_finalize_is_finite_on_real_statistics(
    model: LabelAgreementModel, chats: list[Record]
) -> None:
    stats = EVALUATOR.statistics(model, chats)
    assert all(value >= 0 for value in stats.values())
    metrics = EVALUATOR.finalize(stats)
    assert_finite_metrics(metrics)
    assert metrics["n"] == len(chats)


@given(MODELS, st.lists(records, max_size=10), records)
def test_label_agreement_one_record_moves_each_statistic_within_its_sensitivity(
    model: LabelAgreementModel, chats: list[Record], extra: Record
) -> None:
    sensitivity = EVALUATOR.statistic_sensitivity()
    before = EVALUATOR.statistics(model, chats)
    after = EVALUATOR.statistics(model, [*chats, extra])
    assert before.keys() == after.keys() == sensitivity.keys()
    for key, bound in sensitivity.items():
        assert 0 <= after[key] - before[key] <= bound, key


def _noisy(evaluator: Evaluator) -> st.SearchStrategy[dict[str, int]]:
    """What a sum of noised answers can look like: any subset of the keys, any non-negative counts."""
    keys = sorted(evaluator.statistic_sensitivity())
    return st.dictionaries(st.sampled_from(keys), st.integers(0, 2**53 - 1), max_size=40)


@given(_noisy(EVALUATOR))
def test_label_agreement_finalize_is_finite_on_any_non_negative_statistics(stats: dict[str, int]) -> None:
    assert_finite_metrics(EVALUATOR.finalize(stats))


@given(_noisy(LmPreference()))
def test_lm_preference_finalize_is_finite_on_any_non_negative_statistics(stats: dict[str, int]) -> None:
    metrics = LmPreference().finalize(stats)
    assert all(math.isfinite(value) for value in metrics.values()), metrics
    assert 0.0 <= metrics["preference_accuracy"] <= 1.0
    assert metrics["perplexity"] >= 1.0
