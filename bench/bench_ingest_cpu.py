"""Ingest CPU per request, in process: the node's ASGI app against the bare litestar endpoint.

No sockets and no HTTP server: each target's ASGI app is called directly by 32
concurrent tasks posting the same ~4 KB bodies as ``bench_ingest.py``, and the
process's CPU time (every thread: the event loop, the writer, SQLite) is divided by
the requests answered.  On a shared machine this is steadier than requests per
second: it does not depend on how much of the cores other jobs leave.  With
``--baseline-src`` the node is also measured from another source tree (say a
``git archive`` of the last commit), in the same run.  Each target runs in its own
process, in turn, ``--rounds`` times.

    .venv/bin/python bench/bench_ingest_cpu.py [--requests 3000] [--rounds 2] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

BENCH: Final = Path(__file__).resolve().parent
PATH: Final = "/api/v1/contributions"
CLIENTS: Final = 32


class Outcome(msgspec.Struct, frozen=True):
    target: str
    statuses: dict[str, int]
    cpu_us: float
    rate: float


def _scope(token: str, length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(length).encode()),
        ],
    }


async def _drive(app: Any, token: str, bodies: list[bytes], count: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    sent = 0

    async def one(body: bytes) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # no disconnect while the answer is written
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                key = str(message["status"])
                statuses[key] = statuses.get(key, 0) + 1

        await app(_scope(token, len(body)), receive, send)

    async def client() -> None:
        nonlocal sent
        while sent < count:
            body = bodies[sent % len(bodies)]
            sent += 1
            await one(body)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses


async def _measure(
    app: Any, token: str, bodies: list[bytes], count: int
) -> tuple[dict[str, int], float, float]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await queue.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)
    )
    await asyncio.wait_for(started.wait(), 30)
    await _drive(app, token, bodies, 300)  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    statuses = await _drive(app, token, bodies, count)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    await queue.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, 30)
    return statuses, (cpu1 - cpu0) / count * 1e6, count / (wall1 - wall0)


def child(target: str, count: int) -> Outcome:
    sys.path.insert(0, str(BENCH))
    import bench_ingest

    bodies = bench_ingest.generate_bodies(20261122, 512, 4096)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if target == "bare":
        import bare_app

        statuses, cpu, rate = asyncio.run(_measure(bare_app.create_app(), "none", bodies, count))
        return Outcome(target, statuses, cpu, rate)
    from coop.node.http.app import create_app
    from coop.node.runtime import Node

    work = Path(tempfile.mkdtemp(prefix="coop-bench-cpu-"))
    try:
        root = work / "node"
        token = bench_ingest.make_node(root, synchronous="full")
        node = Node(root)
        try:
            app = create_app(node, background=False)
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 50)  # as coop serve does
            statuses, cpu, rate = asyncio.run(_measure(app, token, bodies, count))
        finally:
            node.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Outcome(target, statuses, cpu, rate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, help="another source tree's src/ to measure too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(msgspec.json.encode(child(args.child, args.requests)).decode())
        return 0

    from results import append_section, code_version, command, machine, markdown_table

    code = code_version()
    load = os.getloadavg()[0]
    targets: list[tuple[str, str, dict[str, str]]] = [("bare", "bare", {}), ("ours", "ours", {})]
    if args.baseline_src is not None:
        env = {"PYTHONPATH": str(args.baseline_src.resolve())}
        targets.append((f"ours at {args.baseline_src}", "ours", env))
    outcomes: dict[str, list[Outcome]] = {name: [] for name, _, _ in targets}
    for _ in range(args.rounds):
        for name, kind, extra in targets:
            env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "HF_HUB_OFFLINE": "1", **extra}
            cmd = [sys.executable, __file__, "--child", kind, "--requests", str(args.requests)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=600)
            outcome = msgspec.json.decode(out.stdout.strip().splitlines()[-1], type=Outcome)
            outcomes[name].append(outcome)
            print(
                f"  {name:40} CPU {outcome.cpu_us:6.0f} us/request  statuses {outcome.statuses}", flush=True
            )
    best = {name: min(o.cpu_us for o in runs) for name, runs in outcomes.items()}
    rows = [
        [
            name,
            " / ".join(f"{o.cpu_us:,.0f}" for o in runs),
            f"{best[name]:,.0f}",
            "-" if name == "bare" else f"{best['bare'] / best[name]:.0%}",
            ", ".join(f"{k}: {v}" for k, v in sorted(runs[-1].statuses.items())),
        ]
        for name, runs in outcomes.items()
    ]
    table = markdown_table(["target", "CPU µs/request per round", "best", "bare/ours", "statuses"], rows)
    print()
    print(table)
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            f"- in process, no HTTP server: {CLIENTS} tasks call the ASGI app; {args.requests} requests per"
            f" round after 300 warm-up; CPU of the whole process (all threads) per request; ours with"
            f" `[storage] synchronous = full`, every 201 after its group commit",
            f"- load average when the run began: {load:.2f}",
            "",
            table,
            "",
        ]
        print(f"\nappended to {append_section('Ingest CPU per request, in process', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
