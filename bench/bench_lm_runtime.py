"""lm-preference's runtime: ONNX Runtime (ours) against PyTorch + transformers, on the same model.

Two scratch venvs under WORKDIR (``python3.11 -m venv``): the install time and the installed
size (``du`` of site-packages) of (a) ``onnxruntime onnx tokenizers numpy`` and (b)
``torch==2.13.0 transformers safetensors tokenizers`` (pip takes torch, the CPU build, from
/opt/wheels).  Then a GPT-2-small-shaped model with random weights (transformers.GPT2Config
defaults) is built and exported to ONNX in the torch venv (bench/lm_runtime_torch.py), and the
same ~200 generated records are scored by transformers in the torch venv and by coop.eval.lm
(the node's path: the export zipped, LmPreference.load, assistant_nll) in this project's venv,
each in a fresh process on one thread.  Reported: ms/record (p50, p95), load time, peak RSS,
and the largest per-record NLL difference between the two runtimes.  Not part of make test.

    .venv/bin/python bench/bench_lm_runtime.py [--records 200] [--workdir /tmp/coop-bench-lm] [--reuse] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from results import append_section, code_version, command, machine, markdown_table  # bench/results.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = {
    "ort": ["onnxruntime", "onnx", "tokenizers", "numpy"],
    "torch": ["torch==2.13.0", "transformers", "safetensors", "tokenizers"],
}
EXPORT_TOOLS = ["optimum-onnx", "onnxruntime"]  # in the torch venv, after it is measured (optimum needs ORT)
SEED = 20260522


def install(workdir: Path, name: str, *, reuse: bool) -> dict[str, float]:
    """Make the venv, time ``pip install`` of its packages, and measure site-packages."""
    venv = workdir / name
    stamp = venv / "install.json"
    if reuse and stamp.exists():
        measured: dict[str, float] = json.loads(stamp.read_text())
        return measured
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([_python311(), "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    before = _du(site)
    started = time.perf_counter()
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--no-cache-dir",
            "--find-links",
            "/opt/wheels",
            *VENVS[name],
        ],
        check=True,
    )
    measured = {"seconds": time.perf_counter() - started, "bytes": _du(site) - before}
    stamp.write_text(json.dumps(measured))
    return measured


def _python311() -> str:
    found = shutil.which("python3.11")
    if found is None:
        raise SystemExit("python3.11 is needed for the scratch venvs")
    return found


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def make_records(count: int) -> tuple[list[str], list[dict[str, object]]]:
    rng = random.Random(SEED)
    words = sorted(
        {"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(3000)}
    )
    records = []
    for _ in range(count):
        messages = [
            [role, " ".join(rng.choices(words, k=rng.randint(5, 60)))]
            for role in ["user", "assistant"] * rng.randint(1, 3)
        ]
        records.append({"messages": messages, "label": rng.choice(["good", "fail"])})
    return words, records


def score_with_ort(workdir: Path, onnx_dir: Path) -> dict[str, object]:
    """In this process (a fresh one): coop.eval.lm over the zipped export, as a node loads it."""
    from coop.eval.lm import LmPreference
    from coop.governance import Message, Record, Role

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # stored: the weights do not compress
        for path in sorted(onnx_dir.iterdir()):
            archive.write(path, path.name)
    artifact = buffer.getvalue()
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model = LmPreference().load(artifact, threads=1)
    load_seconds = time.perf_counter() - started
    del artifact, buffer
    rss_loaded = _rss_now_kib()
    raw = json.loads((workdir / "records.json").read_text())
    records: list[Record] = [
        _record(
            tuple(Message(role=Role(role), content=text) for role, text in item["messages"]), item["label"]
        )
        for item in raw
    ]
    model.assistant_nll(records[0])  # warm-up
    millis, nlls = [], []
    for record in records:
        started = time.perf_counter()
        count, total = model.assistant_nll(record)
        millis.append((time.perf_counter() - started) * 1000)
        nlls.append([count, total])
    model.close()
    return {
        "load_seconds": load_seconds,
        "millis": millis,
        "nlls": nlls,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_start_kib": rss_start,
        "rss_loaded_kib": rss_loaded,
        "artifact_bytes": sum(p.stat().st_size for p in onnx_dir.iterdir()),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
    }


def _record(content: tuple[object, ...], label: str) -> object:
    from coop.governance import (
        Attribution,
        AttributionMode,
        Channel,
        Checks,
        EvalConsent,
        Label,
        License,
        Provenance,
        Record,
        Scope,
        Source,
    )

    return Record(
        uid="r",
        created_at=1_700_000_000,
        route=Channel.API,
        model=None,
        content=content,
        label=Label(label),
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


def _rss_now_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coop-bench-lm"))
    parser.add_argument("--reuse", action="store_true", help="keep venvs (and their measures) made before")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--ort-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir: Path = args.workdir
    if args.ort_side:
        result = score_with_ort(workdir, Path(json.loads((workdir / "export.json").read_text())["onnx_dir"]))
        (workdir / "ort.json").write_text(json.dumps(result))
        return 0
    workdir.mkdir(parents=True, exist_ok=True)
    installs = {name: install(workdir, name, reuse=args.reuse) for name in VENVS}
    torch_python = str(workdir / "torch" / "bin" / "python")
    subprocess.run(
        [str(workdir / "torch" / "bin" / "pip"), "install", "-q", "--no-cache-dir", *EXPORT_TOOLS],
        check=False,
    )
    words, records = make_records(args.records)
    (workdir / "words.json").write_text(json.dumps(words))
    (workdir / "records.json").write_text(json.dumps(records))
    side = HERE / "lm_runtime_torch.py"
    subprocess.run([torch_python, str(side), str(workdir), "export"], check=True)
    exported = json.loads((workdir / "export.json").read_text())
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)]),
    }
    subprocess.run([torch_python, str(side), str(workdir), "score"], check=True, env=env)
    subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--ort-side"], check=True, env=env)
    torch_side = json.loads((workdir / "torch.json").read_text())
    ort_side = json.loads((workdir / "ort.json").read_text())
    lines, verdict = report(installs, exported, torch_side, ort_side, len(records))
    print("\n".join(lines))
    if not args.no_write:
        path = append_section(
            "lm-preference runtime: ONNX Runtime vs PyTorch",
            [
                f"- command: `{command(__file__)}`",
                f"- machine: {machine()}",
                f"- code: {code_version()}",
                *lines,
            ],
        )
        print(f"appended to {path}")
    return 0 if verdict else 1


def report(
    installs: dict[str, dict[str, float]],
    exported: dict[str, Any],
    torch_side: dict[str, Any],
    ort_side: dict[str, Any],
    count: int,
) -> tuple[list[str], bool]:
    t_ms, o_ms = torch_side["millis"], ort_side["millis"]
    pairs = list(zip(torch_side["nlls"], ort_side["nlls"], strict=True))
    same_tokens = all(a[0] == b[0] for a, b in pairs)
    worst = max(abs(a[1] - b[1]) for a, b in pairs)
    worst_per_token = max(abs(a[1] - b[1]) / a[0] for a, b in pairs if a[0])
    tokens = sum(a[0] for a, _ in pairs)
    mib = 1024 * 1024

    def row(what: str, ours: float, theirs: float, fmt: str) -> list[str]:
        return [what, fmt.format(ours), fmt.format(theirs), f"{ours / theirs:.2f}"]

    rows = [
        row("install time (s)", installs["ort"]["seconds"], installs["torch"]["seconds"], "{:.1f}"),
        row(
            "installed size (MiB of site-packages)",
            installs["ort"]["bytes"] / mib,
            installs["torch"]["bytes"] / mib,
            "{:.0f}",
        ),
        row("model load (s)", ort_side["load_seconds"], torch_side["load_seconds"], "{:.2f}"),
        row("ms/record p50", statistics.median(o_ms), statistics.median(t_ms), "{:.1f}"),
        row("ms/record p95", _pct(o_ms, 0.95), _pct(t_ms, 0.95), "{:.1f}"),
        row(
            "peak RSS of the scoring process (MiB)",
            ort_side["max_rss_kib"] / 1024,
            torch_side["max_rss_kib"] / 1024,
            "{:.0f}",
        ),
    ]
    table = markdown_table(
        ["", "ours: ONNX Runtime (coop.eval.lm)", "PyTorch + transformers", "ours/baseline"], rows
    )
    versions = torch_side["versions"]
    agree = same_tokens and worst_per_token < 1e-3
    lines = [
        "- model: GPT-2 small shape (transformers.GPT2Config defaults: 12 layers, 768 wide, 50257-token "
        f"logits, 124M parameters), random weights (torch seed {SEED}), word-level tokenizer; "
        f"ONNX export {ort_side['artifact_bytes'] / mib:.0f} MiB",
        f"- export: `{exported['recipe']}` ({exported['export_seconds']:.0f} s)",
        f"- records: {count} generated chats (1-3 user/assistant turns of 5-60 words), {tokens} scored tokens; "
        "one thread each (ORT intra_op 1, torch.set_num_threads(1)), one warm-up record, a fresh process each",
        f"- versions: torch {versions['torch']}, transformers {versions['transformers']}, onnxruntime "
        f"{ort_side['onnxruntime']}; installs: pip --no-cache-dir from the package registry (torch from /opt/wheels)",
        f"- RSS of the ORT path: {ort_side['rss_loaded_kib'] / 1024:.0f} MiB after load (the process before "
        f"load {ort_side['rss_start_kib'] / 1024:.0f} MiB with the artifact in memory), peak "
        f"{ort_side['max_rss_kib'] / 1024:.0f} MiB",
        f"- NLL agreement: same scored tokens per record: {same_tokens}; largest per-record difference of "
        f"summed NLL {worst:.2e} nats, largest per-token {worst_per_token:.2e} nats "
        f"({'agree' if agree else 'DISAGREE'}, limit 1e-3 nats/token)",
        "",
        table,
    ]
    return lines, agree


if __name__ == "__main__":
    raise SystemExit(main())
