"""``lm-preference``: a causal language model's preference between the chats members marked good and fail.

The model arrives as a zip or tar of an ONNX export (``config.json``,
``tokenizer.json``, ``model.onnx`` and the external-data files the graph
names) and runs on ONNX Runtime's CPU provider: a ~30 MB wheel, where
PyTorch is gigabytes.  Everything a builder ships is data: graphs that call
custom-op libraries, Hugging Face code (``auto_map``), pickles and paths out
of the folder are refused before ONNX Runtime sees them.

The statistics contract (integers that add up across nodes) is in
:class:`LmPreference`; the shared arithmetic is :mod:`coop.eval.scoring`.
Unlike the rest of the package this module touches the file system: ONNX
Runtime reads external weights from files, so the model's files are written
to a private temporary folder (mode 0700) that lives as long as the model.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import math
import os
import shutil
import tarfile
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from coop.eval.errors import ArtifactError, EvaluatorFailedError
from coop.eval.scoring import HIST_FAIL, HIST_GOOD, SCORE_BINS, count, expect_model, pairwise_share, ratio
from coop.governance import Label, Record, Role

__all__ = [
    "LM_EXTRA_MESSAGE",
    "MAX_LM_WINDOW",
    "LmPreference",
    "LmPreferenceModel",
]

LM_EXTRA_MESSAGE: Final = (
    "lm-preference needs the 'lm' extra (ONNX Runtime, onnx, tokenizers): pip install coop-flywheel[lm]"
)
# At most this many tokens of a transcript are read, so one record is bounded in work and in
# its effect on the statistics.
MAX_LM_WINDOW: Final = 1024
MAX_LM_UNPACKED_BYTES: Final = 4 << 30
MAX_LM_MEMBERS: Final = 512
NLL_CLIP_NATS: Final = 20
NLL_BINS_PER_NAT: Final = 100
MICRO: Final = 10**6
_PICKLE_SUFFIXES: Final = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
# The op domains ONNX Runtime's CPU build implements itself; any other needs a custom-op library (code).
ALLOWED_OP_DOMAINS: Final = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
_INPUT_IDS: Final = "input_ids"
_OPTIONAL_INPUTS: Final = frozenset({"attention_mask", "position_ids"})
_LOGITS: Final = "logits"
_INTEGER_TYPES: Final = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclasses.dataclass(frozen=True, eq=False)
class LmPreferenceModel:
    """An ONNX Runtime session of a causal LM, its tokenizer and the private folder holding its files.

    The folder is removed by :meth:`close` or, failing that, when the model is garbage-collected.
    """

    session: Any
    tokenizer: Any
    window: int
    inputs: Mapping[str, Any]  # graph input name -> numpy integer type it takes
    logits: str  # the output read as logits
    vocab: int  # the tokenizer's size: the logits' last dimension must be at least this
    folder: Path
    _cleanup: weakref.finalize[Any, Any] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cleanup", weakref.finalize(self, shutil.rmtree, self.folder, True))

    def close(self) -> None:
        """Remove the model's files now (the session stays usable: ONNX Runtime has read them)."""
        self._cleanup()

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def assistant_nll(self, record: Record) -> tuple[int, float]:
        """(tokens scored, their summed NLL in nats) for the record's assistant turns.

        The transcript is, per message, the tokens of ``"{role}: "``, of the
        content and of ``"\\n"``, each encoded separately and concatenated, cut
        to its first ``window`` tokens.  Each assistant content token after
        the first position is scored by ``-ln P(token | the tokens before it)``
        (log-softmax in float64), clipped to [0, 20] nats.  One forward pass
        per record (no batching, no padding), so a record's numbers do not
        depend on its neighbours.
        """
        ids: list[int] = []
        positions: list[int] = []
        for message in record.content:
            ids.extend(self.encode(f"{message.role}: "))
            start = len(ids)
            ids.extend(self.encode(message.content))
            if message.role == Role.ASSISTANT:
                positions.extend(range(max(start, 1), min(len(ids), self.window)))
            ids.extend(self.encode("\n"))
        if not positions:
            return 0, 0.0
        length = positions[-1] + 1
        logits = self._forward(ids[:length])
        rows = np.asarray([p - 1 for p in positions], dtype=np.int64)
        targets = np.asarray([ids[p] for p in positions], dtype=np.int64)
        picked = logits[rows].astype(np.float64)
        if not np.isfinite(picked).all():
            raise ValueError("the model produced NaN or infinite logits")
        top = picked.max(axis=-1, keepdims=True)
        logprobs = picked - top - np.log(np.exp(picked - top).sum(axis=-1, keepdims=True))
        values: list[float] = logprobs[np.arange(len(positions)), targets].tolist()
        clipped = [min(max(-v, 0.0), float(NLL_CLIP_NATS)) for v in values]
        return len(clipped), math.fsum(clipped)

    def _forward(self, ids: list[int]) -> npt.NDArray[Any]:
        """The logits [positions, vocabulary] of one sequence, checked for shape."""
        length = len(ids)
        feed: dict[str, npt.NDArray[Any]] = {_INPUT_IDS: np.asarray([ids], dtype=self.inputs[_INPUT_IDS])}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = np.ones((1, length), dtype=self.inputs["attention_mask"])
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.arange(length, dtype=self.inputs["position_ids"])[None, :]
        (out,) = self.session.run([self.logits], feed)
        if not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[:2] != (1, length):
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"the model's {self.logits} have shape {shape}, not [1, {length}, vocabulary]")
        if out.shape[2] < self.vocab:
            raise ValueError(f"the tokenizer has {self.vocab} tokens but the model scores {out.shape[2]}")
        logits: npt.NDArray[Any] = out[0]
        return logits


class LmPreference:
    """Whether a language model finds the chats members liked more likely than the ones they did not.

    Per record with at least one scored assistant token
    (:meth:`LmPreferenceModel.assistant_nll`), with ``t`` tokens and summed NLL
    ``s`` nats: ``scored`` += 1, ``tokens`` += t, ``nll_micro`` +=
    ``round(s * 10**6)``, and the mean NLL ``s / t`` falls in bin
    ``k = min(floor(s / t * 100), 999)`` (0.01 nat wide, the last open-ended)
    of ``hist_good_kkk`` or ``hist_fail_kkk``.  ``n`` counts every record.

    Metrics: ``preference_accuracy``, the share of (good, fail) pairs in which
    the good chat has the higher mean log-likelihood (the lower NLL bin), ties
    half, 0.5 when either class is empty; ``mean_nll = nll_micro / tokens /
    10**6`` (0.0 with no tokens) and ``perplexity = exp(min(mean_nll, 20))``,
    both weighted by token; ``n``, ``scored``, ``tokens``.
    """

    name: str = "lm-preference"

    def load(self, artifact: bytes, *, threads: int = 1) -> LmPreferenceModel:
        """Read a zip or tar of an ONNX export of a causal LM and open it in ONNX Runtime on the CPU.

        Needed at the folder's root (a single top folder is stepped into):
        ``config.json``, ``tokenizer.json`` (a ``tokenizers`` file) and
        ``model.onnx``, plus the external-data files it names.  The graph takes
        ``input_ids`` and optionally ``attention_mask`` and ``position_ids``
        (no past key values) and gives ``logits`` (or a single output).
        ``threads`` is ONNX Runtime's intra-op thread count; execution is
        sequential.
        """
        if threads < 1:
            raise ValueError("threads must be at least 1")
        onnx, ort, tokenizers = _lm_modules()
        files = _unpack(artifact)
        for name in ("config.json", "tokenizer.json", "model.onnx"):
            if name not in files:
                raise ArtifactError(f"the model folder has no {name}")
        window = _window(files["config.json"])
        try:
            tokenizer = tokenizers.Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
        except Exception as exc:  # tokenizers raises plain Exception on bad input
            raise ArtifactError(f"tokenizer.json is not a tokenizers file: {exc}") from exc
        vocab: int = tokenizer.get_vocab_size(with_added_tokens=True)
        folder = Path(tempfile.mkdtemp(prefix="coop-lm-"))  # mode 0700
        try:
            path = _write(folder, "model.onnx", files["model.onnx"])
            try:
                graph_model = onnx.load(str(path), load_external_data=False)
            except Exception as exc:  # protobuf's DecodeError, onnx's own errors
                raise ArtifactError(f"model.onnx is not an ONNX model: {exc}") from exc
            _check_domains(graph_model)
            for location in _external_locations(graph_model, files):
                _write(folder, location, files[location])
            feeds, logits = _check_signature(graph_model, vocab)
            # The files are on disk now: free the in-memory copies before ONNX Runtime makes its own.
            del graph_model
            files.clear()
            session = _session(ort, path, threads)
            types = {arg.name: _INTEGER_TYPES.get(arg.type, np.int64) for arg in session.get_inputs()}
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return LmPreferenceModel(
            session=session,
            tokenizer=tokenizer,
            window=window,
            inputs={name: types.get(name, np.int64) for name in feeds},
            logits=logits,
            vocab=vocab,
            folder=folder,
        )

    def statistics(self, model: object, records: Iterable[Record]) -> dict[str, int]:
        loaded = expect_model(model, LmPreferenceModel, self.name)
        stats = dict.fromkeys(self._keys(), 0)
        for record in records:
            stats["n"] += 1
            try:
                tokens, nll = loaded.assistant_nll(record)
            except Exception as exc:  # ONNX Runtime and tokenizers errors, translated once here
                # Never the exception's text: a crafted model can make it carry a record's tokens.
                raise EvaluatorFailedError(
                    f"lm-preference failed on a record ({type(exc).__name__})", cause=exc
                ) from exc
            if tokens == 0:
                continue
            stats["scored"] += 1
            stats["tokens"] += tokens
            stats["nll_micro"] += round(nll * MICRO)
            k = min(int(nll / tokens * NLL_BINS_PER_NAT), SCORE_BINS - 1)
            stats[(HIST_GOOD if record.label == Label.GOOD else HIST_FAIL)[k]] += 1
        return stats

    def finalize(self, stats: Mapping[str, int]) -> dict[str, float]:
        tokens = count(stats, "tokens")
        mean_nll = ratio(count(stats, "nll_micro"), tokens * MICRO)
        return {
            "n": float(count(stats, "n")),
            "scored": float(count(stats, "scored")),
            "tokens": float(tokens),
            "mean_nll": mean_nll,
            "perplexity": math.exp(min(mean_nll, float(NLL_CLIP_NATS))),
            # Bins run from low NLL to high, so "later bin" is "worse": good wins from the far end.
            "preference_accuracy": pairwise_share(stats, HIST_GOOD[::-1], HIST_FAIL[::-1]),
        }

    def statistic_sensitivity(self) -> dict[str, int]:
        sensitivity = dict.fromkeys(self._keys(), 1)
        sensitivity["tokens"] = MAX_LM_WINDOW
        sensitivity["nll_micro"] = MAX_LM_WINDOW * NLL_CLIP_NATS * MICRO
        return sensitivity

    @staticmethod
    def _keys() -> tuple[str, ...]:
        return ("n", "scored", "tokens", "nll_micro", *HIST_GOOD, *HIST_FAIL)


def _lm_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    # Imported by name so that the core installs, type-checks and runs without the extra.
    try:
        return (
            importlib.import_module("onnx"),
            importlib.import_module("onnxruntime"),
            importlib.import_module("tokenizers"),
        )
    except ModuleNotFoundError as exc:
        raise ArtifactError(LM_EXTRA_MESSAGE) from exc
    except ImportError as exc:
        # Installed but not loadable: under the evaluation's memory limit the runtime's shared
        # library may not even map ("failed to map segment"), which is the limit, not the model.
        text = str(exc).lower()
        if "map segment" in text or "cannot allocate" in text or "out of memory" in text:
            raise MemoryError("the model runtime does not load within the memory limit") from exc
        raise EvaluatorFailedError(
            f"the model runtime does not load: {type(exc).__name__}", cause=exc
        ) from exc


def _window(config_bytes: bytes) -> int:
    """The tokens read per record: the model's context (``n_positions``...), at most MAX_LM_WINDOW."""
    try:
        settings = json.loads(config_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"config.json is not JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise ArtifactError("config.json must be a JSON object")
    if "auto_map" in settings:
        raise ArtifactError("the model needs its own code (auto_map); only built-in architectures are run")
    for key in ("max_position_embeddings", "n_positions"):
        limit = settings.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 1:
            return min(limit, MAX_LM_WINDOW)
    return MAX_LM_WINDOW


def _write(folder: Path, name: str, body: bytes) -> Path:
    path = folder / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(body)
    return path


def _graphs(model: Any) -> Iterator[Any]:
    """Every graph of the model: the main one, its subgraphs (If, Loop, Scan) and functions' bodies."""
    pending = [model.graph, *model.functions]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def _check_domains(model: Any) -> None:
    local = {(function.domain, function.name) for function in model.functions}
    for graph in _graphs(model):
        for node in graph.node:
            if node.domain not in ALLOWED_OP_DOMAINS and (node.domain, node.op_type) not in local:
                raise ArtifactError(
                    f"the graph uses {node.op_type} from the op domain {node.domain!r}, which needs a "
                    f"custom-op library (code); only {', '.join(repr(d) for d in sorted(ALLOWED_OP_DOMAINS))} are run"
                )


def _tensors(model: Any) -> Iterator[Any]:
    for graph in _graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def _external_locations(model: Any, files: Mapping[str, bytes]) -> set[str]:
    """The external-data files the graph names, each a plain file name present in the archive."""
    external = 1  # onnx.TensorProto.EXTERNAL
    locations: set[str] = set()
    for tensor in _tensors(model):
        if tensor.data_location != external:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if not location or "/" in location or "\\" in location or location in {".", ".."}:
            raise ArtifactError(
                f"the tensor {tensor.name} keeps its data at {location!r}: only a plain file name "
                "in the model folder is read"
            )
        if location not in files or location == "model.onnx":
            raise ArtifactError(
                f"the tensor {tensor.name} keeps its data in {location}, missing from the archive"
            )
        locations.add(location)
    return locations


def _check_signature(model: Any, vocab: int) -> tuple[list[str], str]:
    """The inputs to feed and the output to read as logits; ArtifactError if the graph does not fit."""
    graph = model.graph
    initialized = {tensor.name for tensor in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in initialized]
    if _INPUT_IDS not in inputs:
        raise ArtifactError("the graph takes no input_ids")
    others = [name for name in inputs if name != _INPUT_IDS and name not in _OPTIONAL_INPUTS]
    if others:
        raise ArtifactError(
            f"the graph takes {', '.join(others[:3])}: only input_ids, attention_mask and position_ids are "
            "fed; export without past key values (optimum-cli export onnx --task text-generation, "
            "not text-generation-with-past)"
        )
    outputs = {value.name: value for value in graph.output}
    if _LOGITS in outputs:
        logits = outputs[_LOGITS]
    elif len(outputs) == 1:
        logits = next(iter(outputs.values()))
    else:
        raise ArtifactError(f"the graph has no output named logits among {len(outputs)} outputs")
    dims = logits.type.tensor_type.shape.dim
    if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value < vocab:
        # A symbolic last dimension is checked on the first run instead.
        raise ArtifactError(f"the tokenizer has {vocab} tokens but the model scores {dims[-1].dim_value}")
    return inputs, logits.name


def _session(ort: ModuleType, path: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings on the node's output
    try:
        # enable_fallback=0: on failure, raise at once (the fallback retries the same CPU provider and prints).
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], enable_fallback=0)
    except Exception as exc:  # ONNX Runtime's Fail, InvalidGraph... derive from Exception alone
        raise ArtifactError(f"ONNX Runtime cannot run model.onnx: {exc}") from exc


# --- reading the archive in memory -------------------------------------------


def _unpack(data: bytes) -> dict[str, bytes]:
    """The regular files of a zip or (optionally compressed) tar, by path, read in memory."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            files = _unzip(data)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
            raise ArtifactError(f"unreadable zip archive: {exc}") from exc
    else:
        try:
            files = _untar(data)
        except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
            raise ArtifactError(f"the artifact is neither a zip nor a readable tar archive: {exc}") from exc
    if "config.json" not in files:
        tops = {name.split("/", 1)[0] for name in files}
        if len(tops) == 1 and all("/" in name for name in files):
            top = tops.pop() + "/"
            files = {name.removeprefix(top): body for name, body in files.items()}
    return files


def _check_member(name: str, size: int, members: int, total: int) -> None:
    if members > MAX_LM_MEMBERS:
        raise ArtifactError(f"the archive holds over {MAX_LM_MEMBERS} files")
    if total + size > MAX_LM_UNPACKED_BYTES:
        raise ArtifactError(f"the archive unpacks to over {MAX_LM_UNPACKED_BYTES} bytes")
    if name.lower().endswith(_PICKLE_SUFFIXES):
        raise ArtifactError(f"{name}: pickled weights are refused; export the model to ONNX")


def _unzip(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename.removeprefix("./")
            _check_member(name, info.file_size, len(files) + 1, total)
            total += info.file_size
            files[name] = archive.read(info)
    return files


def _untar(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():
                raise ArtifactError(f"{member.name}: links and special files are refused")
            name = member.name.removeprefix("./")
            _check_member(name, member.size, len(files) + 1, total)
            total += member.size
            handle = archive.extractfile(member)
            if handle is None:  # pragma: no cover - a regular file always has one
                raise ArtifactError(f"{name}: unreadable")
            with handle:
                files[name] = handle.read()
    return files
