"""Evaluators: what a node runs over its own records, returning only integer statistics.

A federated metric must equal, exactly, the same metric computed over the
pooled records.  Floats summed in different orders differ, so every
evaluator works in two steps: ``statistics`` maps records to a flat
``dict[str, int]`` of sufficient statistics (counts, quantised sums, fixed
histograms) that add up across nodes, and ``finalize`` turns a sum of them
into metrics.  Central evaluation is ``finalize(statistics(all records))``;
federated evaluation is ``finalize(sum of each node's statistics)``; the two
are the same integers, hence the same floats.

Every evaluator returns the same keys whatever the records (empty bins
included), so that which keys appear leaks nothing and noise can be added to
each.  Built-ins: ``label-agreement`` (a hashed bag-of-words logistic
regression shipped as ``.npz``) and ``lm-preference`` (a causal LM exported to
ONNX, run by ONNX Runtime; :mod:`coop.eval.lm`, needing the ``lm`` extra).  Plugins register under the entry-point group
``coop_flywheel.evaluators``.

Pure: no network, no clock, no files; artifacts arrive as bytes (lm-preference
alone writes its model to a private temporary folder for ONNX Runtime).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib
import importlib.metadata
import io
import logging
import math
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from coop.eval.errors import ArtifactError, UnknownEvaluatorError
from coop.eval.lm import LM_EXTRA_MESSAGE, LmPreference, LmPreferenceModel
from coop.eval.scoring import HIST_FAIL as _HIST_FAIL
from coop.eval.scoring import HIST_GOOD as _HIST_GOOD
from coop.eval.scoring import SCORE_BINS
from coop.eval.scoring import count as _count
from coop.eval.scoring import expect_model as _expect_model
from coop.eval.scoring import pairwise_share as _pairwise_share
from coop.eval.scoring import ratio as _ratio
from coop.governance import Label, Record, Role

__all__ = [
    "ENTRY_POINT_GROUP",
    "LABEL_AGREEMENT_FORMAT",
    "LM_EXTRA_MESSAGE",
    "Evaluator",
    "LabelAgreement",
    "LabelAgreementModel",
    "LmPreference",
    "LmPreferenceModel",
    "TextSelector",
    "build_label_agreement_model",
    "get",
    "registered",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "coop_flywheel.evaluators"


@runtime_checkable
class Evaluator(Protocol):
    """A task a node can run over its records; see the module docstring for the contract."""

    name: str

    def load(self, artifact: bytes) -> object:
        """Parse and validate a model artifact; raise ArtifactError on anything malformed."""
        ...

    def statistics(self, model: object, records: Iterable[Record]) -> dict[str, int]:
        """Integer sufficient statistics over ``records``; the same keys whatever the records."""
        ...

    def finalize(self, stats: Mapping[str, int]) -> dict[str, float]:
        """Metrics from (a sum of) statistics; finite for any non-negative statistics."""
        ...

    def statistic_sensitivity(self) -> dict[str, int]:
        """The most one record can change each statistic (L1, in the statistic's units)."""
        ...


# --- shared arithmetic (the rest is coop.eval.scoring) -------------------------


def _softplus(t: float) -> float:
    """log(1 + e^t) without overflow."""
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# --- label-agreement --------------------------------------------------------

LABEL_AGREEMENT_FORMAT: Final = "coop-label-agreement/1"
MIN_DIM: Final = 2**8
MAX_DIM: Final = 2**24
# The largest artifact: float64 weights at MAX_DIM plus room for headers and the small arrays.
MAX_LABEL_AGREEMENT_BYTES: Final = MAX_DIM * 8 + (1 << 20)
LOSS_CLIP_NATS: Final = 20
NANO: Final = 10**9

_TOKEN: Final = re.compile(r"\w+")
_ARRAYS: Final = frozenset({"weights", "bias", "dim", "text", "format"})
_REQUIRED_ARRAYS: Final = frozenset({"weights", "bias", "dim", "format"})
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)


class TextSelector(enum.StrEnum):
    """Which messages of a chat the features are read from."""

    ALL = "all"  # every message, whatever its role (system and tool included)
    ASSISTANT = "assistant"
    USER = "user"


@functools.lru_cache(maxsize=1 << 16)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")


def _buckets(texts: Iterable[str], dim: int) -> list[int]:
    """The sorted distinct feature indices of ``texts``.

    A token is a match of ``\\w+`` (Unicode) in the lowercased text; its index is
    the 8-byte BLAKE2b digest of its UTF-8 bytes, read big-endian, modulo
    ``dim``.  Features are binary (present or not): a long chat does not push
    its score to the extremes by repetition alone.
    """
    found: set[int] = set()
    for text in texts:
        found.update(_token_hash(token) % dim for token in _TOKEN.findall(text.lower()))
    return sorted(found)


def _selected_texts(record: Record, selector: TextSelector) -> list[str]:
    if selector is TextSelector.ALL:
        return [message.content for message in record.content]
    role = Role.ASSISTANT if selector is TextSelector.ASSISTANT else Role.USER
    return [message.content for message in record.content if message.role == role]


@dataclasses.dataclass(frozen=True, eq=False)
class LabelAgreementModel:
    """A loaded, validated hashed bag-of-words logistic regression."""

    weights: npt.NDArray[np.float64]
    bias: float
    dim: int
    text: TextSelector

    def logit(self, record: Record) -> float:
        """``w·x + b``, summed with ``math.fsum`` so it is the same on every machine and order."""
        indices = _buckets(_selected_texts(record, self.text), self.dim)
        terms: list[float] = self.weights[indices].tolist() if indices else []
        return math.fsum([*terms, self.bias])

    def score(self, record: Record) -> float:
        """P(label = good) = sigmoid(w·x + b)."""
        return _sigmoid(self.logit(record))


class LabelAgreement:
    """How well a classifier agrees with the labels members gave their chats.

    The model gives P(good).  The positive class is **fail**: the members'
    failure reports are what a model builder wants to catch.  Per record, with
    ``z = w·x + b`` and ``p = sigmoid(z)``:

    - predicted fail iff ``z < 0`` (that is ``p < 0.5``); ``tp`` fail predicted
      fail, ``fp`` good predicted fail, ``fn`` fail predicted good, ``tn`` good
      predicted good; ``n`` counts records;
    - loss = ``-ln p`` for good, ``-ln(1 - p)`` for fail (computed as a
      softplus of ``z``), clipped to [0, 20] nats, then
      ``round(loss * 10**9)`` (half to even) added to ``log_loss_nano``;
    - score bin ``k = min(floor(p * 1000), 999)`` adds one to
      ``hist_good_kkk`` or ``hist_fail_kkk`` (k zero-padded to three digits).

    Every key is present, zeros included.  Metrics (missing or negative
    statistics count as zero; a ratio with a zero denominator is 0.0):
    ``accuracy = (tp + tn) / (tp + fp + tn + fn)``, ``precision = tp / (tp + fp)``,
    ``recall = tp / (tp + fn)``, ``f1 = 2tp / (2tp + fp + fn)``,
    ``log_loss = log_loss_nano / n / 10**9``, ``n``, and ``auc``: the share of
    (good, fail) pairs in which the good record has the higher score bin, pairs
    in one bin counting half (equal to the AUC for "fail" scored by ``1 - p``),
    0.5 when either class is empty.
    """

    name: str = "label-agreement"

    def load(self, artifact: bytes) -> LabelAgreementModel:
        arrays = _read_npz(artifact)
        missing = sorted(_REQUIRED_ARRAYS - arrays.keys())
        if missing:
            raise ArtifactError(f"the artifact lacks the array(s) {', '.join(missing)}")
        tag = _scalar_text(arrays["format"], "format")
        if tag != LABEL_AGREEMENT_FORMAT:
            raise ArtifactError(f"format is {tag!r}; label-agreement reads {LABEL_AGREEMENT_FORMAT!r}")
        dim = _scalar_int(arrays["dim"], "dim")
        if not MIN_DIM <= dim <= MAX_DIM or dim & (dim - 1):
            raise ArtifactError(f"dim is {dim}; it must be a power of two from 2**8 to 2**24")
        raw_weights = arrays["weights"]
        if raw_weights.dtype.kind != "f" or raw_weights.shape != (dim,):
            raise ArtifactError(
                f"weights must be floats of shape ({dim},), not {raw_weights.dtype} of shape {raw_weights.shape}"
            )
        weights = raw_weights.astype(np.float64)
        if not bool(np.isfinite(weights).all()):
            raise ArtifactError("weights hold NaN or infinite values")
        bias = _scalar_float(arrays["bias"], "bias")
        selector = TextSelector.ALL
        if "text" in arrays:
            text = _scalar_text(arrays["text"], "text")
            try:
                selector = TextSelector(text)
            except ValueError:
                allowed = ", ".join(s.value for s in TextSelector)
                raise ArtifactError(f"text is {text!r}; it must be one of {allowed}") from None
        weights.setflags(write=False)
        return LabelAgreementModel(weights=weights, bias=bias, dim=dim, text=selector)

    def statistics(self, model: object, records: Iterable[Record]) -> dict[str, int]:
        loaded = _expect_model(model, LabelAgreementModel, self.name)
        stats = dict.fromkeys(self._keys(), 0)
        for record in records:
            z = loaded.logit(record)
            good = record.label == Label.GOOD
            predicted_fail = z < 0.0
            if good:
                stats["fp" if predicted_fail else "tn"] += 1
                loss = _softplus(-z)  # -ln sigmoid(z)
            else:
                stats["tp" if predicted_fail else "fn"] += 1
                loss = _softplus(z)  # -ln(1 - sigmoid(z))
            stats["n"] += 1
            stats["log_loss_nano"] += round(min(max(loss, 0.0), float(LOSS_CLIP_NATS)) * NANO)
            k = min(int(_sigmoid(z) * SCORE_BINS), SCORE_BINS - 1)
            stats[(_HIST_GOOD if good else _HIST_FAIL)[k]] += 1
        return stats

    def finalize(self, stats: Mapping[str, int]) -> dict[str, float]:
        tp, fp, tn, fn = (_count(stats, key) for key in ("tp", "fp", "tn", "fn"))
        n = _count(stats, "n")
        return {
            "n": float(n),
            "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auc": _pairwise_share(stats, _HIST_GOOD, _HIST_FAIL),
            "log_loss": _ratio(_count(stats, "log_loss_nano"), n * NANO),
        }

    def statistic_sensitivity(self) -> dict[str, int]:
        sensitivity = dict.fromkeys(self._keys(), 1)
        sensitivity["log_loss_nano"] = LOSS_CLIP_NATS * NANO
        return sensitivity

    @staticmethod
    def _keys() -> tuple[str, ...]:
        return ("n", "tp", "fp", "tn", "fn", "log_loss_nano", *_HIST_GOOD, *_HIST_FAIL)


def _read_npz(data: bytes) -> dict[str, npt.NDArray[Any]]:
    """The arrays of an ``.npz``, refusing pickles, unknown arrays and anything over the limits."""
    if len(data) > MAX_LABEL_AGREEMENT_BYTES:
        raise ArtifactError(f"the artifact is {len(data)} bytes; the limit is {MAX_LABEL_AGREEMENT_BYTES}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = _check_npz_members(archive)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in names}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        # ValueError is also what numpy raises for a pickled array when allow_pickle=False.
        raise ArtifactError(f"not a readable .npz archive: {exc}") from exc


def _check_npz_members(archive: zipfile.ZipFile) -> list[str]:
    """Check every member's name, size and ``.npy`` header before numpy reads any data."""
    names: list[str] = []
    total = 0
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name not in _ARRAYS:
            allowed = ", ".join(sorted(_ARRAYS))
            raise ArtifactError(f"unexpected member {info.filename!r}; the arrays are {allowed}")
        if name in names:
            raise ArtifactError(f"the array {name} appears twice")
        total += info.file_size
        if total > MAX_LABEL_AGREEMENT_BYTES:
            raise ArtifactError(f"the arrays unpack to over {MAX_LABEL_AGREEMENT_BYTES} bytes")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ArtifactError(f"{name}: .npy version {version} is not read here")
        if dtype.hasobject:
            raise ArtifactError(f"{name} holds Python objects (a pickle); only numbers and text are read")
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise ArtifactError(f"{name} declares more data than the archive holds")
        names.append(name)
    return names


def _scalar(array: npt.NDArray[Any], name: str, kinds: str, what: str) -> Any:
    if array.dtype.kind not in kinds or array.ndim > 1 or array.size != 1:
        raise ArtifactError(f"{name} must be a single {what}, not {array.dtype} of shape {array.shape}")
    return array.reshape(()).item()


def _scalar_text(array: npt.NDArray[Any], name: str) -> str:
    value = _scalar(array, name, "US", "string")
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise ArtifactError(f"{name} is not ASCII text") from None
    return str(value)


def _scalar_int(array: npt.NDArray[Any], name: str) -> int:
    return int(_scalar(array, name, "iu", "integer"))


def _scalar_float(array: npt.NDArray[Any], name: str) -> float:
    value = float(_scalar(array, name, "f", "float"))
    if not math.isfinite(value):
        raise ArtifactError(f"{name} is {value}; it must be finite")
    return value


def build_label_agreement_model(
    records: Iterable[tuple[str, bool]],
    *,
    dim: int = 2**16,
    epochs: int = 20,
    seed: int = 0,
    learning_rate: float = 0.1,
    text: TextSelector = TextSelector.ALL,
) -> bytes:
    """Train the hashed logistic regression on ``(text, is_good)`` pairs; the ``.npz`` bytes.

    Plain SGD on the log loss (step ``learning_rate / (1 + epoch)``), examples shuffled each epoch by a PCG64
    generator seeded with ``seed``; features exactly as scoring reads them
    (:func:`_buckets`).  Same inputs and seed, same bytes: the zip members
    carry a fixed timestamp.  ``text`` only tells scoring which messages to read.
    """
    if not MIN_DIM <= dim <= MAX_DIM or dim & (dim - 1):
        raise ValueError(f"dim must be a power of two from 2**8 to 2**24, not {dim}")
    if epochs < 0 or not learning_rate > 0:
        raise ValueError("epochs must be non-negative and the learning rate positive")
    examples = [
        (np.array(_buckets([body], dim), dtype=np.int64), 1.0 if good else 0.0) for body, good in records
    ]
    weights = np.zeros(dim, dtype=np.float64)
    bias = 0.0
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        rate = learning_rate / (1 + epoch)  # decaying, so the last few examples do not set the threshold
        for i in rng.permutation(len(examples)).tolist():
            indices, target = examples[i]
            z = math.fsum([*weights[indices].tolist(), bias])
            step = rate * (_sigmoid(z) - target)
            weights[indices] -= step
            bias -= step
    return _write_npz(
        {
            "weights": weights,
            "bias": np.array(bias, dtype=np.float64),
            "dim": np.array(dim, dtype=np.int64),
            "text": np.array(TextSelector(text).value),
            "format": np.array(LABEL_AGREEMENT_FORMAT),
        }
    )


def _write_npz(arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """An ``.npz`` whose bytes depend on the arrays only (``numpy.savez`` stamps the clock)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


# --- the registry -----------------------------------------------------------


def _builtins() -> tuple[Evaluator, ...]:
    return (LabelAgreement(), LmPreference())


def registered() -> dict[str, Evaluator]:
    """The built-in evaluators and the plugins that load; a built-in name cannot be taken over."""
    found = {evaluator.name: evaluator for evaluator in _builtins()}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        evaluator = _plugin(entry)
        if evaluator is None:
            continue
        if evaluator.name in found:
            log.warning(
                "skipping evaluator plugin %r (%s): the name %r is taken",
                entry.name,
                entry.value,
                evaluator.name,
            )
            continue
        found[evaluator.name] = evaluator
    return found


def _plugin(entry: importlib.metadata.EntryPoint) -> Evaluator | None:
    """The evaluator an entry point's class or factory makes, or None (with a warning) if it fails."""
    try:
        candidate = entry.load()()
    except Exception:  # a broken plugin is skipped, never fatal
        log.warning(
            "skipping evaluator plugin %r (%s): it failed to load", entry.name, entry.value, exc_info=True
        )
        return None
    if not isinstance(candidate, Evaluator) or not isinstance(candidate.name, str):
        log.warning(
            "skipping evaluator plugin %r (%s): %s is not an evaluator",
            entry.name,
            entry.value,
            type(candidate),
        )
        return None
    return candidate


def get(name: str) -> Evaluator:
    """The evaluator registered as ``name``; UnknownEvaluatorError names the known ones."""
    known = registered()
    try:
        return known[name]
    except KeyError:
        raise UnknownEvaluatorError(name, tuple(sorted(known))) from None
