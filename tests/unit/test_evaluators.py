"""Evaluators: shard sums equal the pooled result, metrics match a hand reference, bad artifacts are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import logging
import math
import os
import pickle
import random
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from coop.eval.errors import ArtifactError, UnknownEvaluatorError
from coop.eval.evaluators import (
    ENTRY_POINT_GROUP,
    LABEL_AGREEMENT_FORMAT,
    LM_EXTRA_MESSAGE,
    LabelAgreement,
    LmPreference,
    TextSelector,
    build_label_agreement_model,
    get,
    registered,
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

SEED = int(os.environ.get("COOP_TEST_SEED", "20260522"))

GOOD_WORDS = ["thanks", "perfect", "works", "great", "clear", "helpful", "exactly"]
FAIL_WORDS = ["wrong", "broken", "error", "useless", "invented", "confusing", "crashes"]
NEUTRAL = ["python", "bread", "install", "the", "how", "to", "music", "tax", "garden", "code", "why"]


def make_record(messages: Sequence[tuple[str, str]], label: Label, index: int = 0) -> Record:
    return Record(
        uid=f"r{index}",
        created_at=1_700_000_000 + index,
        route=Channel.API,
        model="some-model",
        content=tuple(Message(role=Role(role), content=text) for role, text in messages),
        label=label,
        license=License.CC0,
        ai_use="train-ai=n",
        eval=EvalConsent.YES,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        contributor_hash="0" * 64,
        scope=Scope.NODE,
        provenance=Provenance(
            source=Source.NATURAL,
            prompt_shown=False,
            format="text",
            checks=Checks(pii={}, content_sha256="0" * 64),
        ),
    )


def labelled_chats(rng: random.Random, count: int) -> list[Record]:
    """Chats whose last user turn mostly (not always) says how it went."""
    records = []
    for i in range(count):
        good = rng.random() < 0.55
        own, other = (GOOD_WORDS, FAIL_WORDS) if good else (FAIL_WORDS, GOOD_WORDS)
        verdict = rng.choices(own if rng.random() < 0.8 else other, k=rng.randint(1, 3))
        messages = [
            ("user", " ".join(rng.choices(NEUTRAL, k=rng.randint(2, 8)))),
            ("assistant", " ".join(rng.choices(NEUTRAL, k=rng.randint(3, 12)))),
            ("user", " ".join([*rng.choices(NEUTRAL, k=2), *verdict]).capitalize()),
        ]
        records.append(make_record(messages, Label.GOOD if good else Label.FAIL, i))
    return records


def transcript(record: Record) -> str:
    return "\n".join(message.content for message in record.content)


def add(stats: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@pytest.fixture(scope="module")
def dataset() -> tuple[bytes, list[Record]]:
    print(f"seed {SEED} (set COOP_TEST_SEED to replay)")
    rng = random.Random(SEED)
    training = labelled_chats(rng, 300)
    artifact = build_label_agreement_model(
        [(transcript(r), r.label is Label.GOOD) for r in training], dim=2**12, epochs=10, seed=SEED
    )
    return artifact, labelled_chats(rng, 400)


# --- the key property: shards add up to the pooled result -------------------------------


def test_label_agreement_five_shards_sum_to_pooled_statistics_exactly(
    dataset: tuple[bytes, list[Record]],
) -> None:
    artifact, records = dataset
    evaluator = LabelAgreement()
    model = evaluator.load(artifact)
    rng = random.Random(SEED + 1)
    shards: list[list[Record]] = [[] for _ in range(5)]
    for record in records:
        shards[rng.randrange(5)].append(record)
    federated = add(evaluator.statistics(model, shard) for shard in shards)
    pooled = evaluator.statistics(model, records)
    assert federated == pooled
    assert evaluator.finalize(federated) == evaluator.finalize(pooled)


# --- metric values against a reference computed by hand --------------------------------


def reference_metrics(artifact: bytes, records: Sequence[Record]) -> dict[str, float]:
    """The same metrics written out directly: brute-force pairs, Fractions, plain sums."""
    with np.load(io.BytesIO(artifact)) as npz:
        weights, bias, dim = npz["weights"], float(npz["bias"]), int(npz["dim"])
    confusion = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    losses: list[float] = []
    goods: list[int] = []
    fails: list[int] = []
    for record in records:
        tokens = set(re.findall(r"\w+", transcript(record).lower()))
        buckets = {int(hashlib.blake2b(t.encode(), digest_size=8).hexdigest(), 16) % dim for t in tokens}
        z = sum(float(weights[j]) for j in buckets) + bias
        p = 1 / (1 + math.exp(-z))
        fail_predicted = p < 0.5
        is_good = record.label is Label.GOOD
        key = {(False, True): "tp", (True, True): "fp", (True, False): "tn", (False, False): "fn"}
        confusion[key[(is_good, fail_predicted)]] += 1
        losses.append(min(-math.log(p if is_good else 1 - p), 20.0))
        (goods if is_good else fails).append(min(math.floor(p * 1000), 999))
    tp, fp, tn, fn = confusion["tp"], confusion["fp"], confusion["tn"], confusion["fn"]
    wins = sum(Fraction(1) if g > f else Fraction(1, 2) if g == f else 0 for g in goods for f in fails)
    return {
        "n": float(len(records)),
        "accuracy": float(Fraction(tp + tn, len(records))),
        "precision": float(Fraction(tp, tp + fp)),
        "recall": float(Fraction(tp, tp + fn)),
        "f1": float(Fraction(2 * tp, 2 * tp + fp + fn)),
        "auc": float(wins / (len(goods) * len(fails))),
        "log_loss": sum(losses) / len(losses),
    }


def test_label_agreement_metrics_match_a_direct_reference(dataset: tuple[bytes, list[Record]]) -> None:
    artifact, records = dataset
    evaluator = LabelAgreement()
    metrics = evaluator.finalize(evaluator.statistics(evaluator.load(artifact), records))
    expected = reference_metrics(artifact, records)
    assert metrics.keys() == expected.keys()
    for name in ("n", "accuracy", "precision", "recall", "f1", "auc"):
        assert metrics[name] == expected[name], name
    # Each record's loss is rounded to a nano-nat: at most 0.5e-9 off per record.
    assert metrics["log_loss"] == pytest.approx(expected["log_loss"], abs=1e-9)
    assert metrics["accuracy"] > 0.65  # above the 0.55 majority baseline: it learnt the verdict words


def test_label_agreement_auc_is_close_to_the_unbinned_auc(dataset: tuple[bytes, list[Record]]) -> None:
    artifact, records = dataset
    evaluator = LabelAgreement()
    model = evaluator.load(artifact)
    scores = [(model.score(r), r.label is Label.GOOD) for r in records]
    goods = [s for s, good in scores if good]
    fails = [s for s, good in scores if not good]
    exact = sum(1.0 if g > f else 0.5 if g == f else 0.0 for g in goods for f in fails) / (
        len(goods) * len(fails)
    )
    assert evaluator.finalize(evaluator.statistics(model, records))["auc"] == pytest.approx(exact, abs=0.01)


def bins(good: dict[int, int] | None = None, fail: dict[int, int] | None = None) -> dict[str, int]:
    stats = {f"hist_good_{k:03d}": v for k, v in (good or {}).items()}
    stats.update({f"hist_fail_{k:03d}": v for k, v in (fail or {}).items()})
    return stats


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        pytest.param(
            {},
            {"n": 0, "accuracy": 0, "precision": 0, "recall": 0, "f1": 0, "auc": 0.5, "log_loss": 0},
            id="no-records-gives-defined-zeros",
        ),
        pytest.param(
            {"n": 3, "tn": 3, "log_loss_nano": 3 * 10**8, **bins(good={900: 3})},
            {"n": 3, "accuracy": 1, "precision": 0, "recall": 0, "f1": 0, "auc": 0.5, "log_loss": 0.1},
            id="only-good-records-none-flagged",
        ),
        pytest.param(
            {"n": 2, "tp": 2, **bins(fail={10: 2})},
            {"n": 2, "accuracy": 1, "precision": 1, "recall": 1, "f1": 1, "auc": 0.5, "log_loss": 0},
            id="only-fail-records-all-caught",
        ),
        pytest.param(
            {"n": 4, "tp": 1, "fp": 1, "fn": 1, "tn": 1, **bins(good={900: 2}, fail={100: 2})},
            {"n": 4, "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "auc": 1, "log_loss": 0},
            id="perfectly-ranked",
        ),
        pytest.param(
            bins(good={100: 1}, fail={900: 3}),
            {"n": 0, "accuracy": 0, "precision": 0, "recall": 0, "f1": 0, "auc": 0, "log_loss": 0},
            id="ranked-backwards",
        ),
        pytest.param(
            bins(good={500: 2, 700: 1}, fail={500: 2, 100: 1}),
            # pairs: 9; good@500 beats fail@100 (2), ties with fail@500 (4 halves); good@700 wins 3
            {"n": 0, "accuracy": 0, "precision": 0, "recall": 0, "f1": 0, "auc": 7 / 9, "log_loss": 0},
            id="ties-in-a-bin-count-half",
        ),
        pytest.param(
            {"n": -1, "tp": -5, "log_loss_nano": -3, **bins(good={1: -2}, fail={2: 4})},
            {"n": 0, "accuracy": 0, "precision": 0, "recall": 0, "f1": 0, "auc": 0.5, "log_loss": 0},
            id="negative-statistics-count-as-zero",
        ),
        pytest.param(
            {"n": 0, "log_loss_nano": 5 * 10**9, "fp": 3},
            {"n": 0, "accuracy": 0, "precision": 0, "recall": 0, "f1": 0, "auc": 0.5, "log_loss": 0},
            id="noise-made-totals-disagree",
        ),
    ],
)
def test_label_agreement_finalize_named_cases(stats: dict[str, int], expected: dict[str, float]) -> None:
    assert LabelAgreement().finalize(stats) == pytest.approx(expected)


def test_label_agreement_statistics_of_no_records_have_every_key_at_zero() -> None:
    evaluator = LabelAgreement()
    model = evaluator.load(build_label_agreement_model([], dim=2**8))
    stats = evaluator.statistics(model, [])
    assert stats.keys() == evaluator.statistic_sensitivity().keys()
    assert set(stats.values()) == {0}
    assert all(key.isascii() for key in stats)


def test_label_agreement_extreme_scores_fill_the_end_bins_and_clip_the_loss() -> None:
    evaluator = LabelAgreement()
    weights = np.zeros(256)
    bucket = int(hashlib.blake2b(b"doom", digest_size=8).hexdigest(), 16) % 256
    weights[bucket] = -1000.0
    model = evaluator.load(npz(weights=weights))
    doomed = make_record([("user", "doom")], Label.GOOD)
    plain = make_record([("user", "fine")], Label.GOOD)
    stats = evaluator.statistics(model, [doomed, plain])
    assert stats["hist_good_000"] == 1  # p is 0
    assert stats["hist_good_500"] == 1  # p is exactly 0.5: not a predicted fail
    assert stats["fp"] == 1
    assert stats["tn"] == 1
    assert stats["log_loss_nano"] == 20 * 10**9 + round(math.log(2) * 10**9)


def test_label_agreement_user_text_model_ignores_assistant_turns() -> None:
    evaluator = LabelAgreement()
    artifact = build_label_agreement_model(
        [("great thanks", True), ("wrong broken", False)] * 20, dim=2**8, text=TextSelector.USER
    )
    model = evaluator.load(artifact)
    assert model.text is TextSelector.USER
    a = make_record([("user", "great"), ("assistant", "wrong broken wrong")], Label.GOOD)
    b = make_record([("user", "great"), ("assistant", "anything else")], Label.GOOD)
    assert model.score(a) == model.score(b)
    assert model.score(a) > 0.5


def test_label_agreement_statistics_refuse_a_model_it_did_not_load() -> None:
    with pytest.raises(TypeError):
        LabelAgreement().statistics(object(), [])


# --- building models ----------------------------------------------------------------


def test_build_label_agreement_model_is_deterministic_for_a_seed() -> None:
    pairs = [("good answer thanks", True), ("wrong answer", False), ("clear and right", True)] * 5
    first = build_label_agreement_model(pairs, dim=2**8, seed=3)
    assert build_label_agreement_model(pairs, dim=2**8, seed=3) == first
    assert build_label_agreement_model(pairs, dim=2**8, seed=4) != first


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"dim": 300}, id="dim-not-a-power-of-two"),
        pytest.param({"dim": 2**7}, id="dim-too-small"),
        pytest.param({"dim": 2**25}, id="dim-too-large"),
        pytest.param({"epochs": -1}, id="negative-epochs"),
        pytest.param({"learning_rate": 0.0}, id="zero-learning-rate"),
    ],
)
def test_build_label_agreement_model_bad_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        build_label_agreement_model([("x", True)], **kwargs)


# --- artifacts that must be refused --------------------------------------------------


def npz(**overrides: Any) -> bytes:
    """A label-agreement artifact written by numpy itself; an override of None drops the array."""
    arrays: dict[str, Any] = {
        "weights": np.zeros(256),
        "bias": np.float64(0.0),
        "dim": np.int64(256),
        "format": np.str_(LABEL_AGREEMENT_FORMAT),
    }
    arrays.update(overrides)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def with_member(name: str, body: bytes) -> bytes:
    buffer = io.BytesIO(npz())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(name, body)
    return buffer.getvalue()


def test_label_agreement_loads_the_minimal_valid_artifact() -> None:
    model = LabelAgreement().load(npz(text=np.str_("assistant"), bias=np.array([0.25], dtype=np.float32)))
    assert (model.dim, model.bias, model.text) == (256, 0.25, TextSelector.ASSISTANT)


@pytest.mark.parametrize(
    ("artifact", "complaint"),
    [
        pytest.param(b"", "npz", id="empty"),
        pytest.param(b"not a model at all", "npz", id="not-a-zip"),
        pytest.param(pickle.dumps({"weights": [0.0] * 256}), "npz", id="a-bare-pickle"),
        pytest.param(npy(np.zeros(256)), "npz", id="a-single-npy"),
        pytest.param(npz()[:200], "npz", id="truncated"),
        pytest.param(npz(weights=np.array([0.0, "x"], dtype=object)), "pickle", id="pickled-object-array"),
        pytest.param(npz(weights=None), "weights", id="missing-weights"),
        pytest.param(npz(format=None), "format", id="missing-format"),
        pytest.param(npz(bias=None, dim=None), "bias, dim", id="missing-bias-and-dim"),
        pytest.param(npz(format=np.str_("coop-label-agreement/2")), "format", id="wrong-format-tag"),
        pytest.param(npz(format=np.int64(1)), "format", id="format-not-text"),
        pytest.param(
            npz(dim=np.int64(300), weights=np.zeros(300)), "power of two", id="dim-not-power-of-two"
        ),
        pytest.param(npz(dim=np.int64(128), weights=np.zeros(128)), "power of two", id="dim-too-small"),
        pytest.param(npz(dim=np.int64(512)), "shape", id="dim-does-not-match-weights"),
        pytest.param(npz(dim=np.float64(256.0)), "integer", id="dim-a-float"),
        pytest.param(npz(weights=np.full(256, np.nan)), "NaN", id="nan-weights"),
        pytest.param(npz(weights=np.array([np.inf] + [0.0] * 255)), "infinite", id="infinite-weight"),
        pytest.param(npz(weights=np.zeros(256, dtype=np.int64)), "float", id="integer-weights"),
        pytest.param(npz(weights=np.zeros((256, 1))), "shape", id="two-dimensional-weights"),
        pytest.param(npz(bias=np.float64(np.nan)), "finite", id="nan-bias"),
        pytest.param(npz(bias=np.zeros(2)), "single", id="bias-not-a-scalar"),
        pytest.param(npz(text=np.str_("system")), "text", id="unknown-text-selector"),
        pytest.param(npz(extra=np.zeros(1)), "unexpected", id="unknown-array"),
        pytest.param(with_member("README.txt", b"hello"), "unexpected", id="non-npy-member"),
    ],
)
def test_label_agreement_malformed_artifact_raises_artifact_error(artifact: bytes, complaint: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        LabelAgreement().load(artifact)
    assert complaint in caught.value.message


def test_label_agreement_artifact_over_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("coop.eval.evaluators.MAX_LABEL_AGREEMENT_BYTES", 1000)
    with pytest.raises(ArtifactError, match="limit"):
        LabelAgreement().load(npz())


def test_label_agreement_header_claiming_more_data_than_stored_is_refused() -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**24,)})
    with pytest.raises(ArtifactError, match="declares more data"):
        LabelAgreement().load(with_member_replaced("weights.npy", header.getvalue() + b"\0" * 64))


def with_member_replaced(name: str, body: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(npz()))
    buffer = io.BytesIO()
    with source, zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            archive.writestr(info.filename, body if info.filename == name else source.read(info))
    return buffer.getvalue()


# --- lm-preference without its extra (ONNX Runtime) ---------------------------------------


def test_lm_preference_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ArtifactError) as caught:
        LmPreference().load(b"anything")
    assert caught.value.message == LM_EXTRA_MESSAGE


def test_lm_preference_finalize_of_nothing_is_defined() -> None:
    assert LmPreference().finalize({}) == {
        "n": 0.0,
        "scored": 0.0,
        "tokens": 0.0,
        "mean_nll": 0.0,
        "perplexity": 1.0,
        "preference_accuracy": 0.5,
    }


def test_lm_preference_prefers_the_good_chat_with_the_lower_nll_bin() -> None:
    stats = {"tokens": 10, "nll_micro": 25 * 10**6, **bins(good={150: 1}, fail={300: 1})}
    metrics = LmPreference().finalize(stats)
    assert metrics["preference_accuracy"] == 1.0
    assert metrics["mean_nll"] == 2.5
    assert metrics["perplexity"] == pytest.approx(math.exp(2.5))


# --- the registry -------------------------------------------------------------------------


class ConstantEvaluator:
    name = "constant"

    def load(self, artifact: bytes) -> object:
        return artifact

    def statistics(self, model: object, records: Iterable[Record]) -> dict[str, int]:
        return {"n": sum(1 for _ in records)}

    def finalize(self, stats: Mapping[str, int]) -> dict[str, float]:
        return {"n": float(stats.get("n", 0))}

    def statistic_sensitivity(self) -> dict[str, int]:
        return {"n": 1}


class Impostor(ConstantEvaluator):
    name = "label-agreement"


class NoMethods:
    name = "half-done"


def _raise_on_construction() -> object:
    raise RuntimeError("plugin exploded while starting")


@dataclasses.dataclass(frozen=True)
class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint: load() gives ``target`` or fails to import."""

    name: str
    value: str
    target: Callable[[], object] | None

    def load(self) -> Callable[[], object]:
        if self.target is None:
            raise ModuleNotFoundError(f"No module named {self.value.split(':')[0]!r}")
        return self.target


def use_plugins(monkeypatch: pytest.MonkeyPatch, *plugins: FakeEntryPoint) -> None:
    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        return list(plugins) if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_registered_holds_the_built_ins() -> None:
    found = registered()
    assert isinstance(found["label-agreement"], LabelAgreement)
    assert isinstance(found["lm-preference"], LmPreference)
    assert isinstance(get("label-agreement"), LabelAgreement)


def test_get_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownEvaluatorError) as caught:
        get("telepathy")
    assert "telepathy" in caught.value.message
    assert "label-agreement, lm-preference" in caught.value.message


def test_registry_adds_a_plugin_and_skips_broken_ones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_plugins(
        monkeypatch,
        FakeEntryPoint("missing", "nowhere.at_all:Thing", None),
        FakeEntryPoint("explodes", "plugin:boom", _raise_on_construction),
        FakeEntryPoint("half", "plugin:NoMethods", NoMethods),
        FakeEntryPoint("impostor", "plugin:Impostor", Impostor),
        FakeEntryPoint("constant", "plugin:ConstantEvaluator", ConstantEvaluator),
    )
    with caplog.at_level(logging.WARNING, logger="coop.eval.evaluators"):
        found = registered()
    assert sorted(found) == ["constant", "label-agreement", "lm-preference"]
    assert isinstance(found["label-agreement"], LabelAgreement)  # a plugin cannot take a built-in's name
    assert isinstance(get("constant"), ConstantEvaluator)
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("missing", "explodes", "half", "impostor"):
        assert any(f"plugin {name!r}" in message for message in skipped), name
