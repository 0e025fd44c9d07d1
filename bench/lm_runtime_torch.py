"""The PyTorch side of bench_lm_runtime.py, run by the scratch torch venv's Python (no coop there).

    python lm_runtime_torch.py WORKDIR export     # then
    python lm_runtime_torch.py WORKDIR score      # a fresh process, so its RSS is the scoring's

Reads WORKDIR/records.json, builds a GPT-2-small-shaped model with random weights
(transformers.GPT2Config defaults) and a word-level tokenizer, saves them as a Hugging
Face folder (WORKDIR/hf), exports it to ONNX (WORKDIR/onnx: optimum-cli if it is
installed, torch.onnx.export otherwise), scores every record as coop.eval.lm does, and
writes WORKDIR/torch.json: the export commands, per-record milliseconds, NLLs and RSS.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tokenizers
import torch
import transformers

SEED = 20260522
WINDOW = 1024
CLIP = 20.0


def build(workdir: Path, words: list[str]) -> Path:
    folder = workdir / "hf"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    vocab = {word: i for i, word in enumerate(["[UNK]", *sorted(set(words) | {"user", "assistant", ":"})])}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(SEED)
    config = transformers.GPT2Config()  # GPT-2 small: 12 layers, 12 heads, 768 wide, 50257 tokens
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def export(folder: Path, workdir: Path) -> tuple[str, Path]:
    """The ONNX export of ``folder``: optimum-cli if it runs, torch.onnx.export otherwise."""
    out = workdir / "onnx"
    shutil.rmtree(out, ignore_errors=True)
    optimum = Path(sys.executable).parent / "optimum-cli"
    if optimum.exists():
        argv = [str(optimum), "export", "onnx", "--model", str(folder), "--task", "text-generation", str(out)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0 and (out / "model.onnx").exists():
            shutil.copy(folder / "tokenizer.json", out / "tokenizer.json")
            return "optimum-cli export onnx --model HF_DIR --task text-generation ONNX_DIR", out
        print("optimum-cli failed:", done.stderr[-2000:], file=sys.stderr)
    out.mkdir(parents=True)
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    model.config.use_cache = False
    ids = torch.ones((1, 8), dtype=torch.long)
    dynamic = {"batch": 0, "sequence": 1}
    torch.onnx.export(
        _LogitsOnly(model),
        (ids, torch.ones_like(ids), torch.arange(8)[None, :]),
        str(out / "model.onnx"),
        input_names=["input_ids", "attention_mask", "position_ids"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": dynamic,
            "attention_mask": dynamic,
            "position_ids": dynamic,
            "logits": dynamic,
        },
        opset_version=17,
        dynamo=False,
    )
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(folder / name, out / name)
    return "torch.onnx.export(..., dynamo=False, opset_version=17) (see _LogitsOnly)", out


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).logits


def nll(
    model: torch.nn.Module, tokenizer: tokenizers.Tokenizer, messages: list[list[str]]
) -> tuple[int, float]:
    """coop.eval.lm.LmPreferenceModel.assistant_nll, written for torch."""
    ids: list[int] = []
    positions: list[int] = []
    for role, content in messages:
        ids += tokenizer.encode(f"{role}: ", add_special_tokens=False).ids
        start = len(ids)
        ids += tokenizer.encode(content, add_special_tokens=False).ids
        if role == "assistant":
            positions += range(max(start, 1), min(len(ids), WINDOW))
        ids += tokenizer.encode("\n", add_special_tokens=False).ids
    if not positions:
        return 0, 0.0
    n = positions[-1] + 1
    with torch.inference_mode():
        inputs = torch.tensor([ids[:n]])
        logits = model(
            input_ids=inputs, attention_mask=torch.ones_like(inputs), position_ids=torch.arange(n)[None, :]
        ).logits[0]
        logprobs = torch.log_softmax(logits.to(torch.float64), dim=-1)
        values = logprobs[[p - 1 for p in positions], [ids[p] for p in positions]].tolist()
    return len(values), math.fsum(min(max(-v, 0.0), CLIP) for v in values)


def main() -> int:
    workdir, step = Path(sys.argv[1]), sys.argv[2]
    if step == "export":
        words = json.loads((workdir / "words.json").read_text())
        folder = build(workdir, words)
        started = time.perf_counter()
        recipe, onnx_dir = export(folder, workdir)
        exported = {
            "recipe": recipe,
            "onnx_dir": str(onnx_dir),
            "export_seconds": time.perf_counter() - started,
        }
        (workdir / "export.json").write_text(json.dumps(exported))
        return 0
    records = json.loads((workdir / "records.json").read_text())
    folder = workdir / "hf"
    torch.set_num_threads(1)
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    started = time.perf_counter()
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    load_seconds = time.perf_counter() - started
    nll(model, tokenizer, records[0]["messages"])  # warm-up, as the ORT side does
    millis, nlls = [], []
    for record in records:
        started = time.perf_counter()
        count, total = nll(model, tokenizer, record["messages"])
        millis.append((time.perf_counter() - started) * 1000)
        nlls.append([count, total])
    result = {
        "load_seconds": load_seconds,
        "millis": millis,
        "nlls": nlls,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (workdir / "torch.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
