"""A tiny causal language model, built offline, to try ``lm-preference`` without downloading a model.

:func:`build_tiny_lm` writes what a builder's ONNX export holds: ``config.json``
(GPT-2 style), ``tokenizer.json`` (a word-level ``tokenizers`` file over a fixed
word list, with ``[UNK]``) and ``model.onnx``, a GPT-2-shaped transformer with
random weights built node by node with ``onnx.helper`` (opset 17).  The weights
are named as in GPT-2 (``wte``, ``wpe``, ``h{i}.ln_1.weight``, ``h{i}.attn.q.weight``...,
``ln_f.bias``), each ``[in, out]`` so that a layer is ``x @ weight + bias``.

Needs the ``lm`` extra (onnx, tokenizers).  Used by ``coop eval tiny-model``,
the demo and the tests.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import onnx
import tokenizers
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSET", "WORDS", "build_tiny_lm", "pack_folder"]

OPSET: Final = 17
LN_EPSILON: Final = 1e-5
STD: Final = 0.02
_CHAT_WORDS: Final = """a about after again all also am an and answer any are as ask at back bad be because been
            before best better both but by can cat code could data day did do does done down each error
            even every fail fails file find first for from function get give go good got had has have he
            help her here him his how i if in into is it its just know last let like line list long look
            made make many mat me more most much must my name need new no not now number of off ok on one
            only or other our out over people please python question read really right run runs said same
            sat say see she should show so some sorry still such sure take tell test than thank thanks that
            the their them then there these they thing think this those time to too try two up us use
            very want was way we well were what when where which while who why will with without word
            work would write wrong yes yet you your"""
# The tokenizer's vocabulary: the roles of a transcript, punctuation and a few hundred chat words.
WORDS: Final = tuple(
    sorted({"user", "assistant", "system", "tool", ":", ",", ".", "?", "!", "'", *_CHAT_WORDS.split()})
)
UNKNOWN: Final = "[UNK]"
Packing = Literal["zip", "tar.gz", "tar"]


def build_tiny_lm(
    out_dir: Path,
    *,
    seed: int,
    layers: int = 2,
    heads: int = 2,
    width: int = 32,
    positions: int = 64,
    external_data: bool = False,
) -> Path:
    """Write a tiny random causal LM (config.json, tokenizer.json, model.onnx) into ``out_dir``.

    Random weights from ``numpy.random.Generator(seed)`` (standard deviation 0.02,
    small random biases): different seeds give different models, the same seed
    the same bytes.  ``external_data`` keeps the weights (tensors of 1 KiB or more) in ``model.onnx_data``
    beside the graph, as exports of large models do.  Returns ``out_dir``.
    """
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {word: i for i, word in enumerate((UNKNOWN, *WORDS))}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    (out_dir / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_layer": layers,
        "n_head": heads,
        "n_embd": width,
        "n_positions": positions,
        "vocab_size": len(vocab),
        "layer_norm_epsilon": LN_EPSILON,
        "activation_function": "gelu_new",
    }
    (out_dir / "config.json").write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    graph = _Graph(np.random.default_rng(seed))
    graph.transformer(len(vocab), layers=layers, heads=heads, width=width, positions=positions)
    model = graph.model()
    for stale in ("model.onnx", "model.onnx_data"):
        (out_dir / stale).unlink(missing_ok=True)
    if external_data:
        onnx.save_model(
            model,
            str(out_dir / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.onnx_data",
            size_threshold=1024,  # the weights; shapes and scalars stay in the graph for shape inference
        )
    else:
        onnx.save_model(model, str(out_dir / "model.onnx"))
    return out_dir


def pack_folder(folder: Path, packing: Packing = "zip", *, top: str = "") -> bytes:
    """The files of ``folder`` (sorted, not recursive) as zip or tar bytes, optionally under ``top``."""
    buffer = io.BytesIO()
    paths = sorted(path for path in folder.iterdir() if path.is_file())
    if packing == "zip":
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, top + path.name)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz" if packing == "tar.gz" else "w") as archive:
            for path in paths:
                archive.add(path, arcname=top + path.name)
    return buffer.getvalue()


class _Graph:
    """Nodes and initializers of one ONNX graph, appended in order, with unique names."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.vocab = 0
        self.mask = ""  # the name of the attention mask, once causal_mask() made it
        self._names: Iterator[int] = iter(range(1 << 30))

    def weight(self, name: str, shape: tuple[int, ...], *, around: float = 0.0) -> str:
        values = around + STD * self.rng.standard_normal(shape)
        return self.constant(name, values.astype(np.float32))

    def constant(self, name: str, values: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        out = f"{op_type.lower()}_{next(self._names)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attributes))
        return out

    def layer_norm(self, x: str, prefix: str, width: int) -> str:
        scale = self.weight(f"{prefix}.weight", (width,), around=1.0)
        bias = self.weight(f"{prefix}.bias", (width,))
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=LN_EPSILON)

    def linear(self, x: str, prefix: str, n_in: int, n_out: int) -> str:
        weight = self.weight(f"{prefix}.weight", (n_in, n_out))
        return self.op("Add", self.op("MatMul", x, weight), self.weight(f"{prefix}.bias", (n_out,)))

    def transformer(self, vocab: int, *, layers: int, heads: int, width: int, positions: int) -> None:
        self.vocab = vocab
        wte = self.weight("wte", (vocab, width))
        wpe = self.weight("wpe", (positions, width))
        h = self.op("Add", self.op("Gather", wte, "input_ids"), self.op("Gather", wpe, "position_ids"))
        self.causal_mask()
        for i in range(layers):
            attended = self.attention(self.layer_norm(h, f"h{i}.ln_1", width), f"h{i}.attn", heads, width)
            h = self.op("Add", h, attended)
            h = self.op("Add", h, self.mlp(self.layer_norm(h, f"h{i}.ln_2", width), f"h{i}.mlp", width))
        h = self.layer_norm(h, "ln_f", width)
        self.nodes.append(
            helper.make_node("MatMul", [h, self.op("Transpose", wte, perm=[1, 0])], ["logits"], name="logits")
        )

    def causal_mask(self) -> None:
        """[batch, 1, seq, seq] booleans: key j is visible from query i when j <= i and j is not padding."""
        seq = self.op("Gather", self.op("Shape", "input_ids"), self.constant("one", np.array(1, np.int64)))
        zero = self.constant("zero", np.array(0, np.int64))
        index = self.op("Range", zero, seq, "one")
        rows = self.op("Unsqueeze", index, self.constant("axes_1", np.array([1], np.int64)))
        cols = self.op("Unsqueeze", index, self.constant("axes_0", np.array([0], np.int64)))
        causal = self.op("GreaterOrEqual", rows, cols)
        keys = self.op("Cast", "attention_mask", to=TensorProto.BOOL)
        keys = self.op("Unsqueeze", keys, self.constant("axes_1_2", np.array([1, 2], np.int64)))
        self.mask = self.op("And", causal, keys)

    def attention(self, x: str, prefix: str, heads: int, width: int) -> str:
        depth = width // heads
        split = self.constant(f"{prefix}.split_shape", np.array([0, 0, heads, depth], np.int64))
        q, k, v = (
            self.op("Reshape", self.linear(x, f"{prefix}.{name}", width, width), split) for name in "qkv"
        )
        scores = self.op(
            "MatMul", self.op("Transpose", q, perm=[0, 2, 1, 3]), self.op("Transpose", k, perm=[0, 2, 3, 1])
        )
        scale = self.constant(f"{prefix}.scale", np.array(1.0 / math.sqrt(depth), np.float32))
        hidden = self.constant(f"{prefix}.hidden", np.array(-1e9, np.float32))
        weights = self.op(
            "Softmax", self.op("Where", self.mask, self.op("Mul", scores, scale), hidden), axis=-1
        )
        context = self.op("MatMul", weights, self.op("Transpose", v, perm=[0, 2, 1, 3]))
        merged = self.op(
            "Reshape",
            self.op("Transpose", context, perm=[0, 2, 1, 3]),
            self.constant(f"{prefix}.merge_shape", np.array([0, 0, width], np.int64)),
        )
        return self.linear(merged, f"{prefix}.proj", width, width)

    def mlp(self, x: str, prefix: str, width: int) -> str:
        up = self.linear(x, f"{prefix}.fc", width, 4 * width)
        return self.linear(self.gelu(up, prefix), f"{prefix}.proj", 4 * width, width)

    def gelu(self, x: str, prefix: str) -> str:
        """GPT-2's tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        cube = self.op("Mul", self.op("Mul", x, x), x)
        cubic = self.constant(f"{prefix}.gelu_cubic", np.array(0.044715, np.float32))
        inner = self.op("Add", x, self.op("Mul", cube, cubic))
        slope = self.constant(f"{prefix}.gelu_slope", np.array(math.sqrt(2.0 / math.pi), np.float32))
        one = self.constant(f"{prefix}.gelu_one", np.array(1.0, np.float32))
        half = self.constant(f"{prefix}.gelu_half", np.array(0.5, np.float32))
        gate = self.op("Add", one, self.op("Tanh", self.op("Mul", inner, slope)))
        return self.op("Mul", self.op("Mul", x, gate), half)

    def model(self) -> onnx.ModelProto:
        ids = [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in ("input_ids", "attention_mask", "position_ids")
        ]
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", self.vocab])
        graph = helper.make_graph(self.nodes, "tiny-causal-lm", ids, [logits], self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="coop-flywheel tiny_lm",
            ir_version=8,
        )
        onnx.checker.check_model(model)
        return model
