"""Durable ingest while the node evaluates: what the evaluation's child process costs ingest.

A real ``coop serve`` (granian, ``synchronous = "full"``, pipeline held as in
``bench_ingest.py``) is seeded with accepted contributions, then takes durable
ingest from ``wrk`` (or ``bench/loadgen.py``) at 8 clients for ``--duration``
seconds in three phases, on the same data directory, in one run:

(a) no evaluation;
(b) evaluations back to back through the loopback eval endpoint
    (``POST /api/v1/eval/local``), each in its child process at ``eval.nice = 10``;
(c) the same with the child at ``eval.nice = 0``.

The evaluation is CPU-heavy on purpose: ``label-agreement`` over every accepted
record (``--seed-seconds`` of ingest with the pipeline live, then ``coop
process``), or with ``--lm`` ``lm-preference`` over a wider tiny LM
(:mod:`coop.eval.tiny_lm`).  Reported per phase: p50/p99 latency, rate of
201s, evaluations completed, and the ratios to phase (a).

    .venv/bin/python bench/bench_eval_ingest.py [--duration 20] [--clients 8] [--lm]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Final

import msgspec
import tomli_w

from bench_ingest import COOP, HOST, Loader, free_port, generate_bodies, make_node, pipeline_held, running
from coop.eval import Filters, build_label_agreement_model, build_request
from coop.governance.signing import Signer
from loadgen import LoadResult
from results import append_section, code_version, command, machine, markdown_table

EVAL_PATH: Final = "/api/v1/eval/local"


class Evaluations:
    """Posts evaluation requests to the node's local interface back to back until stopped."""

    def __init__(self, port: int, token: str, node_id: str, task: str, artifact: bytes) -> None:
        self.port, self.token, self.node_id, self.task, self.artifact = port, token, node_id, task, artifact
        self.stop = threading.Event()
        self.answered = 0
        self.other: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _one(self) -> None:
        request = build_request(
            signer=Signer(bytes(range(32))),
            task=self.task,
            model_name="bench",
            artifact=self.artifact,
            targets=[self.node_id],
            purpose="bench",
            filters=Filters(),
            now=int(time.time()),
            lifetime=3600,
            nonce=secrets.token_hex(8),
        )
        body = b'{"request":' + request + b',"artifact":"' + base64.b64encode(self.artifact) + b'"}'
        conn = http.client.HTTPConnection(HOST, self.port, timeout=600)
        try:
            conn.request(
                "POST",
                EVAL_PATH,
                body=body,
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
            answer = msgspec.json.decode(conn.getresponse().read())
        finally:
            conn.close()
        if answer.get("decline"):
            self.other.append(f"{answer['decline']}: {answer.get('detail')}")
        else:
            self.answered += 1

    def _loop(self) -> None:
        while not self.stop.is_set():
            self._one()

    def __enter__(self) -> Evaluations:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=600)


class DiskProbe:
    """Times a 16 KiB write + fdatasync every 50 ms on the node's file system while a phase runs.

    The store's commits wait on the same device: a stall here is the disk's, not the node's."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "disk-probe.bin"
        self.stop = threading.Event()
        self.seconds: list[float] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        block = os.urandom(16384)
        try:
            while not self.stop.wait(0.05):
                start = time.monotonic()
                os.write(fd, block)
                os.fdatasync(fd)
                self.seconds.append(time.monotonic() - start)
        finally:
            os.close(fd)

    def summary(self) -> str:
        """p99 / max in ms (one device stall is one slow sample here, but a slow request per connection)."""
        ordered = sorted(self.seconds)
        if not ordered:
            return "-"
        return (
            f"{ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3:.0f} / {ordered[-1] * 1e3:.0f}"
        )

    def __enter__(self) -> DiskProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _set_eval(root: Path, **values: object) -> None:
    path = root / "node.toml"
    config = tomllib.loads(path.read_text())
    config.setdefault("eval", {}).update(values)
    path.write_text(tomli_w.dumps(config))


def _serve(root: Path, port: int) -> list[str]:
    return [str(COOP), "serve", str(root), "--port", str(port), "--server", "granian"]


def _seed(root: Path, token: str, loader: Loader, seconds: float, work: Path) -> str:
    """Ingest for ``seconds``, then run the pipeline: the records the evaluations read."""
    port = free_port()
    with running(_serve(root, port), port=port, log_path=work / "seed.log"):
        loader.run(port, token, 8, seconds)
    out = subprocess.run([str(COOP), "process", str(root)], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _model(lm: bool, work: Path) -> tuple[str, bytes]:
    if lm:
        from coop.eval.tiny_lm import build_tiny_lm, pack_folder

        folder = build_tiny_lm(work / "lm", seed=1, layers=4, heads=4, width=256, positions=256)
        return "lm-preference", pack_folder(folder)
    data = [("thanks correct helpful", True), ("wrong error broken", False)] * 20
    return "label-agreement", build_label_agreement_model(data, dim=2**16, seed=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed-seconds", type=float, default=6.0)
    parser.add_argument("--lm", action="store_true", help="lm-preference over a wider tiny LM")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "python-loadgen"
    work = Path(tempfile.mkdtemp(prefix="bench-eval-ingest-"))
    load_before = os.getloadavg()[0]
    try:
        bodies = generate_bodies(7, 4000, 4096)
        bodies_path = work / "bodies.jsonl"
        bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
        loader = Loader(bodies, bodies_path, tool)
        root = work / "node"
        token = make_node(root, synchronous="full")
        seeded = _seed(root, token, loader, args.seed_seconds, work)
        print("seeded:", seeded)
        eval_token = (root / "keys" / "eval.token").read_text().strip()
        task, artifact = _model(args.lm, work)
        rows: list[tuple[str, LoadResult, int, list[str]]] = []
        disk: list[str] = []
        for phase, nice in (
            ("(a) no evaluation", None),
            ("(b) evals, nice 10", 10),
            ("(c) evals, nice 0", 0),
        ):
            _set_eval(root, nice=nice if nice is not None else 10)
            port = free_port()
            with (
                pipeline_held(root),
                running(_serve(root, port), port=port, log_path=work / f"serve-{nice}.log"),
            ):
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                conn.request(
                    "GET", "/api/v1/eval/local/identity", headers={"Authorization": f"Bearer {eval_token}"}
                )
                node_id = msgspec.json.decode(conn.getresponse().read())["node_id"]
                conn.close()
                loader.run(port, token, args.clients, 2.0)  # warm-up
                if nice is None:
                    with DiskProbe(work) as probe:
                        result = loader.run(port, token, args.clients, args.duration)
                    rows.append((phase, result, 0, []))
                else:
                    with Evaluations(port, eval_token, node_id, task, artifact) as evals:
                        time.sleep(1.0)  # the first child is running
                        with DiskProbe(work) as probe:
                            result = loader.run(port, token, args.clients, args.duration)
                    rows.append((phase, result, evals.answered, evals.other[:3]))
                disk.append(probe.summary())
            print(
                phase,
                f"p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms rate {result.rate:.0f}/s",
                f"disk fsync p99 / max {disk[-1]} ms",
            )
        base = rows[0][1]
        table = markdown_table(
            [
                "phase",
                "p50 ms",
                "p99 ms",
                "rate /s",
                "p99 / (a)",
                "rate / (a)",
                "evals answered",
                "disk fsync p99 / max ms",
            ],
            [
                [
                    phase,
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.rate:.0f}",
                    f"{r.p99_ms / base.p99_ms:.2f}",
                    f"{r.rate / base.rate:.2f}",
                    str(answered),
                    fsync,
                ]
                for (phase, r, answered, _), fsync in zip(rows, disk, strict=True)
            ],
        )
        declines = sorted({d for *_, other in rows for d in other})
        lines = [
            f"`{command(__file__)}`",
            "",
            f"{machine()}; {code_version()}; load: {tool}, {args.clients} clients, {args.duration:g} s per phase;",
            f"evaluation: {task} over the seeded records ({seeded}) ({len(artifact)} byte model), back to back,",
            "each in its own child process (eval.threads = 1, eval.memory_mb = 4096).",
            f"Machine load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}"
            " (other jobs share these 2 cores: compare phases within this run only).",
            "The last column times a 16 KiB write + fdatasync every 50 ms on the node's file system in"
            " the same window: ingest's commits wait on that device, so a p99 that follows it is the disk's.",
            "",
            table,
        ]
        if declines:
            lines += ["", "Declines seen: " + "; ".join(declines)]
        print("\n".join(lines))
        if not args.no_write:
            append_section("Ingest while the node evaluates (child process, nice 10 vs 0)", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
