"""lm-preference on ONNX Runtime, over a tiny random causal LM built offline (coop.eval.tiny_lm).

Shards add up to the pooled statistics; the NLLs equal an independent numpy forward pass of the
same weights; every packing reads the same; unsafe or unfit models are refused at load; a model
that misbehaves while scoring fails the run.
"""

from __future__ import annotations

import gc
import io
import json
import math
import os
import random
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import tokenizers
from onnx import TensorProto, helper, numpy_helper

from coop.eval.errors import ArtifactError, EvaluatorFailedError
from coop.eval.lm import LmPreference, LmPreferenceModel
from coop.eval.tiny_lm import build_tiny_lm, pack_folder
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
# Words the tiny tokenizer knows, and two it does not ("hello", "zebra": [UNK]).
WORDS = ["hello", "thanks", "the", "cat", "sat", "on", "mat", "python", "code", "runs", "fails", "why", "how"]
WORDS += ["zebra", "?", "good", "wrong"]
Packer = Callable[[Path], bytes]


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


def chats(rng: random.Random, count: int) -> list[Record]:
    out = []
    for _ in range(count):
        turns = [
            (role, " ".join(rng.choices(WORDS, k=rng.randint(1, 9))))
            for role in [Role.USER, Role.ASSISTANT] * rng.randint(1, 3)
        ]
        out.append(make_record(turns, rng.choice(list(Label))))
    return out


def add(stats: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), seed=SEED)


@pytest.fixture(scope="module")
def external_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as model_dir, kept in model.onnx_data beside the graph."""
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm-external"), seed=SEED, external_data=True)


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> LmPreferenceModel:
    return LmPreference().load(pack_folder(model_dir, "tar.gz"))


@pytest.fixture(scope="module")
def records() -> list[Record]:
    print(f"seed {SEED} (set COOP_TEST_SEED to replay)")
    return chats(random.Random(SEED), 60)


def test_lm_preference_five_shards_sum_to_pooled_statistics_exactly(
    loaded: LmPreferenceModel, records: list[Record]
) -> None:
    evaluator = LmPreference()
    rng = random.Random(SEED + 1)
    shards: list[list[Record]] = [[] for _ in range(5)]
    for record in records:
        shards[rng.randrange(5)].append(record)
    federated = add(evaluator.statistics(loaded, shard) for shard in shards)
    pooled = evaluator.statistics(loaded, records)
    assert federated == pooled
    assert evaluator.finalize(federated) == evaluator.finalize(pooled)
    assert pooled["n"] == pooled["scored"] == len(records)


# --- an independent forward pass, in numpy, from the graph's initializers -------------------


class Reference:
    """GPT-2's forward pass written out in float64 numpy over the weights stored in model.onnx."""

    def __init__(self, folder: Path) -> None:
        model = onnx.load(str(folder / "model.onnx"))
        self.w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
        config = json.loads((folder / "config.json").read_text())
        self.layers, self.heads = config["n_layer"], config["n_head"]
        self.window = config["n_positions"]
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))

    def norm(self, x: np.ndarray[Any, Any], prefix: str) -> np.ndarray[Any, Any]:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]

    def dense(self, x: np.ndarray[Any, Any], prefix: str) -> np.ndarray[Any, Any]:
        return x @ self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]

    def logits(self, ids: list[int]) -> np.ndarray[Any, Any]:
        n = len(ids)
        x = self.w["wte"][ids] + self.w["wpe"][np.arange(n)]
        future = np.triu(np.ones((n, n), dtype=bool), k=1)
        for i in range(self.layers):
            a = self.norm(x, f"h{i}.ln_1")
            q, k, v = (
                self.dense(a, f"h{i}.attn.{p}").reshape(n, self.heads, -1).transpose(1, 0, 2) for p in "qkv"
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            scores[:, future] = -np.inf
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(1, 0, 2).reshape(n, -1)
            x = x + self.dense(context, f"h{i}.attn.proj")
            up = self.dense(self.norm(x, f"h{i}.ln_2"), f"h{i}.mlp.fc")
            gelu = 0.5 * up * (1 + np.tanh(math.sqrt(2 / math.pi) * (up + 0.044715 * up**3)))
            x = x + self.dense(gelu, f"h{i}.mlp.proj")
        return self.norm(x, "ln_f") @ self.w["wte"].T

    def nll(self, record: Record) -> tuple[int, float]:
        """(scored tokens, summed clipped NLL) of the record's assistant turns."""
        ids: list[int] = []
        scored: list[int] = []
        for message in record.content:
            for text, is_answer in (
                (f"{message.role.value}: ", False),
                (message.content, True),
                ("\n", False),
            ):
                piece = self.tokenizer.encode(text, add_special_tokens=False).ids
                if is_answer and message.role is Role.ASSISTANT:
                    scored += [p for p in range(len(ids), len(ids) + len(piece)) if 0 < p < self.window]
                ids += piece
        if not scored:
            return 0, 0.0
        logits = self.logits(ids[: self.window])
        total = 0.0
        for p in scored:
            row = logits[p - 1]
            logprob = row[ids[p]] - row.max() - math.log(np.exp(row - row.max()).sum())
            total += min(max(-logprob, 0.0), 20.0)
        return len(scored), total


def test_lm_preference_nlls_equal_an_independent_numpy_forward_pass(
    model_dir: Path, loaded: LmPreferenceModel, records: list[Record]
) -> None:
    reference = Reference(model_dir)
    for record in records:
        tokens, nll = loaded.assistant_nll(record)
        expected_tokens, expected_nll = reference.nll(record)
        assert tokens == expected_tokens
        assert nll == pytest.approx(expected_nll, rel=1e-5)
    metrics = LmPreference().finalize(LmPreference().statistics(loaded, records))
    pairs = [reference.nll(record) for record in records]
    tokens = sum(count for count, _ in pairs)
    assert metrics["tokens"] == tokens
    assert metrics["mean_nll"] == pytest.approx(sum(nll for _, nll in pairs) / tokens, rel=1e-5)


def test_lm_preference_different_seeds_give_different_nlls(
    tmp_path: Path, loaded: LmPreferenceModel, records: list[Record]
) -> None:
    other = LmPreference().load(pack_folder(build_tiny_lm(tmp_path, seed=SEED + 7)))
    ours = [loaded.assistant_nll(record)[1] for record in records[:10]]
    theirs = [other.assistant_nll(record)[1] for record in records[:10]]
    assert all(a != b for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(lambda d: pack_folder(d, "zip"), id="zip"),
        pytest.param(lambda d: pack_folder(d, "tar"), id="tar"),
        pytest.param(lambda d: pack_folder(d, "tar.gz", top="tiny/"), id="tar-with-a-top-folder"),
        pytest.param(lambda d: pack_folder(d, "zip", top="./"), id="zip-with-dot-slash"),
        pytest.param(lambda d: zipped(d, {"README.md": b"# tiny"}), id="zip-with-a-readme"),
    ],
)
def test_lm_preference_reads_the_same_model_however_packed(
    model_dir: Path, external_dir: Path, loaded: LmPreferenceModel, records: list[Record], pack: Packer
) -> None:
    evaluator = LmPreference()
    expected = evaluator.statistics(loaded, records[:20])
    assert evaluator.statistics(evaluator.load(pack(model_dir)), records[:20]) == expected
    assert evaluator.statistics(evaluator.load(pack(external_dir)), records[:20]) == expected


def test_lm_preference_external_data_model_keeps_its_weights_apart(external_dir: Path) -> None:
    assert (external_dir / "model.onnx_data").stat().st_size > (external_dir / "model.onnx").stat().st_size


def test_lm_preference_threads_do_not_change_the_numbers(
    model_dir: Path, loaded: LmPreferenceModel, records: list[Record]
) -> None:
    evaluator = LmPreference()
    two = evaluator.load(pack_folder(model_dir), threads=2)
    assert evaluator.statistics(two, records[:10]) == evaluator.statistics(loaded, records[:10])


def test_lm_preference_counts_a_chat_without_assistant_turns_but_does_not_score_it(
    loaded: LmPreferenceModel,
) -> None:
    stats = LmPreference().statistics(loaded, [make_record([(Role.USER, "hello")], Label.GOOD)])
    assert (stats["n"], stats["scored"], stats["tokens"]) == (1, 0, 0)


def test_lm_preference_long_chat_is_cut_at_the_context_window(loaded: LmPreferenceModel) -> None:
    evaluator = LmPreference()
    long = make_record([(Role.USER, "why"), (Role.ASSISTANT, " ".join(["cat"] * 500))], Label.FAIL)
    stats = evaluator.statistics(loaded, [long])
    # n_positions (64) less the context before the first scored token: user : why assistant :
    assert stats["tokens"] == 64 - 5
    assert stats["tokens"] <= evaluator.statistic_sensitivity()["tokens"]


def test_lm_preference_model_files_live_in_a_private_folder_removed_with_the_model(model_dir: Path) -> None:
    model = LmPreference().load(pack_folder(model_dir))
    folder = model.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "model.onnx").is_file()
    model.close()
    assert not folder.exists()
    collected = LmPreference().load(pack_folder(model_dir))
    folder = collected.folder
    del collected
    gc.collect()
    assert not folder.exists()


# --- models edited to misbehave -------------------------------------------------------------


def zipped(folder: Path, replacements: Mapping[str, bytes | None]) -> bytes:
    """A zip of the folder with some files replaced (None drops one) or added."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            if path.name not in replacements:
                archive.write(path, path.name)
        for name, body in replacements.items():
            if body is not None:
                archive.writestr(name, body)
    return buffer.getvalue()


def edited(folder: Path, edit: Callable[[onnx.ModelProto], None]) -> bytes:
    """The folder zipped with its model.onnx (graph only, external data left as is) edited."""
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    edit(model)
    return zipped(folder, {"model.onnx": model.SerializeToString()})


def _edited_config(folder: Path, **changes: object) -> dict[str, bytes]:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    return {"config.json": json.dumps(config).encode()}


def _big_tokenizer() -> dict[str, bytes]:
    vocab = {"[UNK]": 0, **{f"word{i}": i + 1 for i in range(300)}}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return {"tokenizer.json": tokenizer.to_str().encode()}


def _with_symlink(folder: Path) -> bytes:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(pack_folder(folder, "tar.gz"))) as source,
        tarfile.open(fileobj=out, mode="w") as archive,
    ):
        for member in source:
            archive.addfile(member, source.extractfile(member))
        link = tarfile.TarInfo("weights-link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return out.getvalue()


def _custom_domain(model: onnx.ModelProto) -> None:
    node = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    node.domain = "com.example.fastops"
    model.opset_import.append(helper.make_opsetid("com.example.fastops", 1))


def _external_location(location: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location

    return edit


def _past_key_values(model: onnx.ModelProto) -> None:
    model.graph.input.append(
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["batch", 2, "past", 16])
    )


def _no_input_ids(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        node.input[:] = ["tokens" if name == "input_ids" else name for name in node.input]
    model.graph.input[0].name = "tokens"


def _two_outputs_none_named_logits(model: onnx.ModelProto) -> None:
    _renamed_logits(model, "scores")
    final_norm = next(
        n for n in model.graph.node if n.op_type == "LayerNormalization" and "ln_f.weight" in n.input
    )
    model.graph.output.append(helper.make_tensor_value_info(final_norm.output[0], TensorProto.FLOAT, None))


def _renamed_logits(model: onnx.ModelProto, name: str) -> None:
    next(n for n in model.graph.node if n.output[0] == "logits").output[0] = name
    model.graph.output[0].name = name


def _symbolic_vocabulary(model: onnx.ModelProto) -> None:
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "vocabulary"


def _broken_graph(model: onnx.ModelProto) -> None:
    model.graph.node[-1].input[0] = "no_such_tensor"


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        pytest.param(lambda d: b"neither zip nor tar", "neither", id="not-an-archive"),
        pytest.param(lambda d: zipped(d, {"pytorch_model.bin": b"\x80\x04pickle"}), "pickled", id="pickled"),
        pytest.param(lambda d: zipped(d, {"model.onnx": None}), "model.onnx", id="no-model"),
        pytest.param(lambda d: zipped(d, {"config.json": None}), "config.json", id="no-config"),
        pytest.param(lambda d: zipped(d, {"tokenizer.json": None}), "tokenizer.json", id="no-tokenizer"),
        pytest.param(lambda d: zipped(d, {"config.json": b"{not json"}), "JSON", id="config-not-json"),
        pytest.param(lambda d: zipped(d, {"config.json": b"[1]"}), "object", id="config-not-an-object"),
        pytest.param(
            lambda d: zipped(d, _edited_config(d, auto_map={"AutoModelForCausalLM": "x.Y"})),
            "own code",
            id="needs-remote-code",
        ),
        pytest.param(
            lambda d: zipped(d, {"tokenizer.json": b'{"nope": 1}'}), "tokenizer", id="bad-tokenizer"
        ),
        pytest.param(lambda d: zipped(d, {"model.onnx": b"\x08garbage"}), "not an ONNX model", id="not-onnx"),
        pytest.param(lambda d: edited(d, _custom_domain), "custom-op library", id="custom-op-domain"),
        pytest.param(lambda d: edited(d, _past_key_values), "without past key values", id="with-past"),
        pytest.param(lambda d: edited(d, _no_input_ids), "no input_ids", id="no-input-ids"),
        pytest.param(
            lambda d: edited(d, _two_outputs_none_named_logits), "no output named logits", id="no-logits"
        ),
        pytest.param(lambda d: zipped(d, _big_tokenizer()), "tokenizer has 301 tokens", id="vocab-too-big"),
        pytest.param(lambda d: edited(d, _broken_graph), "ONNX Runtime cannot run", id="invalid-graph"),
        pytest.param(_with_symlink, "links", id="tar-with-a-symlink"),
    ],
)
def test_lm_preference_bad_artifact_raises_artifact_error(
    model_dir: Path, make: Callable[[Path], bytes], complaint: str
) -> None:
    with pytest.raises(ArtifactError) as caught:
        LmPreference().load(make(model_dir))
    assert complaint in caught.value.message


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        pytest.param(
            lambda d: edited(d, _external_location("../model.onnx_data")), "plain file name", id="dot-dot"
        ),
        pytest.param(
            lambda d: edited(d, _external_location("/etc/passwd")), "plain file name", id="absolute-path"
        ),
        pytest.param(
            lambda d: edited(d, _external_location("weights/model.onnx_data")),
            "plain file name",
            id="sub-folder",
        ),
        pytest.param(
            lambda d: zipped(d, {"model.onnx_data": None}), "missing from the archive", id="missing"
        ),
    ],
)
def test_lm_preference_external_data_outside_the_archive_is_refused(
    external_dir: Path, make: Callable[[Path], bytes], complaint: str
) -> None:
    with pytest.raises(ArtifactError) as caught:
        LmPreference().load(make(external_dir))
    assert complaint in caught.value.message


def test_lm_preference_reads_a_single_output_not_named_logits(
    model_dir: Path, loaded: LmPreferenceModel, records: list[Record]
) -> None:
    evaluator = LmPreference()
    renamed = evaluator.load(edited(model_dir, lambda m: _renamed_logits(m, "output")))
    assert evaluator.statistics(renamed, records[:5]) == evaluator.statistics(loaded, records[:5])


def _nan_final_norm(model: onnx.ModelProto) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == "ln_f.weight")
    tensor.CopyFrom(numpy_helper.from_array(np.full(tensor.dims, np.nan, dtype=np.float32), tensor.name))


def _logits_without_positions(model: onnx.ModelProto) -> None:
    """Logits averaged over the sequence: [batch, vocabulary], not [batch, sequence, vocabulary]."""
    _renamed_logits(model, "per_position")
    model.graph.node.append(
        helper.make_node("ReduceMean", ["per_position"], ["logits"], axes=[1], keepdims=0)
    )
    model.graph.output[0].name = "logits"
    del model.graph.output[0].type.tensor_type.shape.dim[1]


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        pytest.param(lambda d: edited(d, _logits_without_positions), "shape", id="logits-of-a-wrong-shape"),
        pytest.param(lambda d: edited(d, _nan_final_norm), "NaN", id="nan-weights"),
        pytest.param(
            lambda d: zipped(d, {**_big_tokenizer(), "model.onnx": _serialized(d, _symbolic_vocabulary)}),
            "tokenizer has 301 tokens",
            id="vocabulary-too-big-seen-on-the-first-run",
        ),
    ],
)
def test_lm_preference_model_failing_while_scoring_raises_evaluator_failed(
    model_dir: Path, make: Callable[[Path], bytes], complaint: str
) -> None:
    evaluator = LmPreference()
    model = evaluator.load(make(model_dir))
    chat = make_record([(Role.USER, "why"), (Role.ASSISTANT, "the cat")], Label.GOOD)
    with pytest.raises(EvaluatorFailedError) as caught:
        evaluator.statistics(model, [chat])
    # The why stays inside the node (in the cause); what leaves names the failure's type only,
    # since a crafted model can make an error's text carry a record's tokens.
    assert complaint in str(caught.value.cause)
    assert re.fullmatch(r"lm-preference failed on a record \(\w+\)", caught.value.message)
    assert caught.value.__cause__ is caught.value.cause


def _serialized(folder: Path, edit: Callable[[onnx.ModelProto], None]) -> bytes:
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    edit(model)
    return model.SerializeToString()
