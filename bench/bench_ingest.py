"""Durable ingest: contributions/s and latency of ``coop serve`` against a bare litestar endpoint.

For each server kind (uvicorn, granian) the benchmark starts on 127.0.0.1,
each in its own process: the bare app (``bench/bare_app.py``: decode the
body, store nothing) and ``coop serve`` on fresh data directories with
``[storage] synchronous`` "full" and "normal".  At each client count it
measures them in turn (so a slow drift in the machine's load hits all of
them alike): a warm-up, then a fixed window, with ``wrk`` (or the Python
load generator in ``bench/loadgen.py`` when wrk is missing) posting ~4 KB
bodies generated up front from a seed.  After each node stops, its database
must hold exactly one row per 201 counted.

The node's pipeline is kept out of the measurement by holding the data
directory's processor lock: ``[pipeline] interval_seconds`` alone does not
do it, because every new contribution pokes the scheduler.  One extra run
per server kind (the first synchronous mode, the top client count) leaves
the pipeline live, for comparison.  When ours falls short of 70% of the
bare endpoint at the top client count, the node is profiled with py-spy
during an extra, unmeasured load (``--profile``).  CPU used by the server,
the load generator and everything else on the machine is reported per
point: on a shared 2-core machine other people's jobs skew the figures, so
the server's CPU per 201 is reported too (its ratio, bare over ours, is what
the throughput ratio would be if both got the same CPU).

    .venv/bin/python bench/bench_ingest.py [--duration 8] [--warmup 2] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import importlib.util
import math
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import msgspec
import tomli_w

from loadgen import LoadResult, run_load
from profiling import profile_server, pyspy_available, thread_cpu
from results import append_section, code_version, command, machine, markdown_table

BENCH: Final = Path(__file__).resolve().parent
VENV_BIN: Final = Path(sys.executable).parent
COOP: Final = VENV_BIN / "coop"
WRK_SCRIPT: Final = BENCH / "wrk_post.lua"
HOST: Final = "127.0.0.1"
PATH: Final = "/api/v1/contributions"
AIM_FIRST_BAR: Final = 0.40
AIM_TARGET: Final = 0.70
P99_BAR_MS: Final = 50.0

_VOCABULARY: Final = (
    "model answer question context token prompt dataset license member co-op release bucket "
    "training evaluation summary paragraph sentence example function variable python error "
    "request response server client latency throughput cache memory disk network database "
    "table column index query schema migration writer reader commit transaction durable "
    "garden recipe flour butter oven minutes bake bread yeast water salt sugar morning "
    "travel train station ticket city river bridge museum weekend holiday weather rain "
    "explain rewrite translate shorten expand compare list why how what when which could "
    "please thanks sure here is the a an and or but so because although however therefore "
    "first second finally also then next quickly carefully simply clearly really quite"
)
WORDS: Final = tuple(_VOCABULARY.split())


# --- request bodies --------------------------------------------------------------


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    return " ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!"))


def generate_bodies(seed: int, count: int, size: int) -> list[bytes]:
    """``count`` distinct contribution bodies of about ``size`` bytes each (messages format)."""
    rng = random.Random(seed)
    encoder = msgspec.json.Encoder()
    bodies = []
    for n in range(count):
        turns = rng.choice((2, 4, 6))
        per_turn = max(200, (size - 160) // turns)
        messages = []
        for turn in range(turns):
            parts: list[str] = [f"[{n}:{turn}]"]
            length = 0
            while length < per_turn:
                sentence = _sentence(rng)
                parts.append(sentence)
                length += len(sentence) + 1
            messages.append(
                {"role": "user" if turn % 2 == 0 else "assistant", "content": " ".join(parts)[:per_turn]}
            )
        body = {
            "label": rng.choice(("good", "good", "fail")),
            "consent": True,
            "format": "messages",
            "content": {"messages": messages},
        }
        bodies.append(encoder.encode(body))
    return bodies


# --- processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not gone after 15 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def running(cmd: list[str], *, port: int, log_path: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a server in its own process group until the block ends; yields its pid."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            deadline = time.monotonic() + 30
            while not _healthy(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{tail}")
                time.sleep(0.1)
            yield proc.pid
        finally:
            _stop(proc)


@contextlib.contextmanager
def pipeline_held(root: Path) -> Iterator[None]:
    """Hold the node's processor lock so that its scheduler never runs the pipeline."""
    path = root / "locks" / "processor.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (bench_ingest)".encode(), 0)
        yield
    finally:
        os.close(fd)


def make_node(root: Path, *, synchronous: str) -> str:
    """A fresh data directory with limits raised for load; returns a member token."""
    subprocess.run([str(COOP), "init", str(root), "--name", "bench"], check=True, capture_output=True)
    config_path = root / "node.toml"
    config = tomllib.loads(config_path.read_text())
    config["rate_limit"] = {
        "per_ip_per_minute": 100_000_000,
        "per_ip_burst": 1_000_000,
        "per_token_per_minute": 100_000_000,
        "per_token_burst": 1_000_000,
    }
    config["pipeline"]["interval_seconds"] = 3600.0
    config["storage"]["synchronous"] = synchronous
    config_path.write_text(tomli_w.dumps(config))
    out = subprocess.run(
        [str(COOP), "member", "add", str(root), "bench"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def count_rows(root: Path) -> int:
    conn = sqlite3.connect(f"file:{root / 'coop.sqlite3'}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT count(*) FROM contributions").fetchone()
        return int(n)
    finally:
        conn.close()


# --- load -----------------------------------------------------------------------------


class Loader:
    """Runs one load at a time with wrk (preferred) or the Python load generator."""

    def __init__(self, bodies: list[bytes], bodies_path: Path, tool: str) -> None:
        self.bodies = bodies
        self.bodies_path = bodies_path
        self.tool = tool

    def run(self, port: int, token: str, clients: int, seconds: float) -> LoadResult:
        if self.tool == "python-loadgen":
            return run_load(HOST, port, PATH, self.bodies, token, connections=clients, seconds=seconds)
        duration = math.ceil(seconds) + 1  # wrk takes whole seconds; 1 s more to drain
        cmd = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            f"http://{HOST}:{port}{PATH}",
            "--",
            str(self.bodies_path),
            f"{seconds}",
            token,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("COOP_WRK ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no COOP_WRK line:\n{out.stdout}\n{out.stderr}")
        raw = msgspec.json.decode(line.removeprefix("COOP_WRK "))
        return LoadResult(
            tool="wrk",
            connections=clients,
            sent=raw["sent"],
            received=raw["received"],
            created=raw["created"],
            other=raw["other"],
            window_s=raw["window_s"],
            p50_ms=raw["p50_us"] / 1e3,
            p90_ms=raw["p90_us"] / 1e3,
            p99_ms=raw["p99_us"] / 1e3,
            max_ms=raw["max_us"] / 1e3,
            errors=sum(raw["errors"].values()) - raw["errors"]["status"],
        )


class Row(msgspec.Struct, frozen=True):
    server: str
    target: str  # "bare", "ours full", "ours normal", "ours full, pipeline live"
    clients: int
    result: LoadResult
    server_cpu: float  # cores used by the server process over the measured window
    loader_cpu: float  # cores used by the load generator
    other_cpu: float  # cores used by everything else on the machine (other people's jobs)

    @property
    def cpu_per_201_us(self) -> float:
        """Server CPU (all its threads) per 201, in microseconds."""
        return self.server_cpu / self.result.rate * 1e6 if self.result.rate else 0.0


class Check(msgspec.Struct, frozen=True):
    server: str
    target: str
    created: int
    rows: int
    unanswered: int

    @property
    def ok(self) -> bool:
        return self.created == self.rows and self.unanswered == 0


# --- the benchmark ------------------------------------------------------------------


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_children_cpu() -> float:
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Servers are children too, but only those that have exited and been waited for count here.
    return self_usage.ru_utime + self_usage.ru_stime + children.ru_utime + children.ru_stime


def _server_note(kind: str) -> str:
    if kind == "uvicorn":
        http_impl = "httptools" if importlib.util.find_spec("httptools") else "h11"
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        return f"uvicorn ({http_impl}, {loop} loop)"
    return "granian (embedded, ASGI, 1 runtime thread)"


class Target:
    """One server under test and what was counted against it."""

    def __init__(self, server: str, name: str, cmd: list[str], port: int, token: str, root: Path | None):
        self.server = server
        self.name = name
        self.cmd = cmd
        self.port = port
        self.token = token
        self.root = root  # the node's data directory; None for the bare app
        self.pid = 0
        self.created = 0
        self.unanswered = 0

    def count(self, result: LoadResult) -> None:
        self.created += result.created
        self.unanswered += result.sent - result.received

    def check(self) -> Check:
        assert self.root is not None
        return Check(self.server, self.name, self.created, count_rows(self.root), self.unanswered)


class Bench:
    def __init__(self, args: argparse.Namespace, loader: Loader, work: Path) -> None:
        self.args = args
        self.loader = loader
        self.work = work
        self.rows: list[Row] = []
        self.checks: list[Check] = []
        self.profiles: dict[str, list[str]] = {}
        self.top = max(args.clients)

    def bare(self, server: str) -> Target:
        port = free_port()
        cmd = [sys.executable, str(BENCH / "bare_app.py"), "--server", server, "--port", str(port)]
        return Target(server, "bare", cmd, port, "none", None)

    def node(self, server: str, synchronous: str, *, live: bool = False) -> Target:
        name = f"ours {synchronous}" + (", pipeline live" if live else "")
        root = self.work / f"node-{server}-{synchronous}{'-live' if live else ''}"
        token = make_node(root, synchronous=synchronous)
        port = free_port()
        cmd = [str(COOP), "serve", str(root), "--host", HOST, "--port", str(port), "--server", server]
        return Target(server, name, cmd, port, token, root)

    def start(self, stack: contextlib.ExitStack, target: Target, *, hold_pipeline: bool) -> None:
        if hold_pipeline and target.root is not None:
            stack.enter_context(pipeline_held(target.root))
        log = self.work / f"{target.server}-{target.name.replace(' ', '-').replace(',', '')}.log"
        target.pid = stack.enter_context(running(target.cmd, port=target.port, log_path=log))

    def measure(self, target: Target, clients: int) -> Row:
        warm = self.loader.run(target.port, target.token, clients, self.args.warmup)
        target.count(warm)
        # CPU is read at the start and at the end of the sending window (not after the drain).
        marks = [self._cpu_mark(target.pid)]
        timer = threading.Timer(self.args.duration, lambda: marks.append(self._cpu_mark(target.pid)))
        timer.start()
        try:
            result = self.loader.run(target.port, target.token, clients, self.args.duration)
        finally:
            timer.join()
        target.count(result)
        (t0, server0, machine0, own0), (t1, server1, machine1, _) = marks
        # The load generator's CPU shows in rusage only once it has exited: count all of it.
        own1 = _own_children_cpu()
        server_cpu, loader_cpu = (server1 - server0) / (t1 - t0), (own1 - own0) / (t1 - t0)
        other = max(0.0, (machine1 - machine0) / (t1 - t0) - server_cpu - loader_cpu)
        row = Row(target.server, target.name, clients, result, server_cpu, loader_cpu, other)
        self.rows.append(row)
        print(
            f"  {target.server:8} {target.name:26} c={clients:<3} {result.rate:8,.0f} 201/s  "
            f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  non-201 {result.other + result.errors}  "
            f"CPU server {server_cpu:.2f} load {loader_cpu:.2f} others {other:.2f}",
            flush=True,
        )
        return row

    @staticmethod
    def _cpu_mark(pid: int) -> tuple[float, float, float, float]:
        return time.monotonic(), sum(thread_cpu(pid).values()), _machine_busy(), _own_children_cpu()

    def row(self, server: str, target: str, clients: int) -> Row | None:
        return next(
            (r for r in self.rows if (r.server, r.target, r.clients) == (server, target, clients)), None
        )

    def cost_ratio(self, server: str, target: str, clients: int) -> float | None:
        """Bare's server CPU per 201 over ours: what the throughput ratio would be on a quiet machine
        (both given the same CPU), so less skewed by other jobs taking the cores unevenly."""
        ours, bare = self.row(server, target, clients), self.row(server, "bare", clients)
        if ours is None or bare is None or not ours.cpu_per_201_us or not bare.cpu_per_201_us:
            return None
        return bare.cpu_per_201_us / ours.cpu_per_201_us

    def ratio(self, server: str, target: str, clients: int) -> float | None:
        ours, bare = self.row(server, target, clients), self.row(server, "bare", clients)
        if ours is None or bare is None or not bare.result.rate:
            return None
        return ours.result.rate / bare.result.rate

    def run_server(self, server: str) -> None:
        """Bare and ours side by side: all started, measured in turn at each client count."""
        args = self.args
        targets = [self.bare(server)] + [self.node(server, sync) for sync in args.sync]
        with contextlib.ExitStack() as stack:
            for target in targets:
                self.start(stack, target, hold_pipeline=True)
            for clients in args.clients:
                for target in targets:
                    self.measure(target, clients)
            first = targets[1]
            ratio = self.ratio(server, first.name, self.top)
            wanted = args.profile == "on" or (
                args.profile == "auto" and ratio is not None and ratio < AIM_TARGET
            )
            if wanted:
                self.profile(first)
        for target in targets[1:]:
            self.verify(target)
        if not args.no_live_pipeline:
            live = self.node(server, args.sync[0], live=True)
            with contextlib.ExitStack() as stack:
                self.start(stack, live, hold_pipeline=False)
                self.measure(live, self.top)
            self.verify(live)

    def profile(self, target: Target) -> None:
        problem = pyspy_available()
        if problem is not None:
            print(f"  (profile skipped: {problem})")
            return
        seconds = self.args.profile_seconds
        print(f"  profiling {target.server} {target.name} at c={self.top} for {seconds} s with py-spy ...")
        extra: list[LoadResult] = []
        load = lambda: extra.append(self.loader.run(target.port, target.token, self.top, seconds + 2))  # noqa: E731
        with in_background(load):
            time.sleep(1)
            out = self.work / f"profile-{target.server}.txt"
            self.profiles[f"{target.server}, {target.name}"] = profile_server(target.pid, seconds, out)
        for result in extra:
            target.count(result)

    def verify(self, target: Target) -> None:
        """After the node stopped: one row in contributions per 201 counted."""
        check = target.check()
        self.checks.append(check)
        print(
            f"  db check {check.server} {check.target}: {check.rows} rows in contributions, "
            f"{check.created} 201s counted, {check.unanswered} unanswered: {'OK' if check.ok else 'MISMATCH'}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per point (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point (default 2)")
    parser.add_argument("--clients", type=_ints, default=[1, 8, 32], help="client counts (default 1,8,32)")
    parser.add_argument("--servers", type=_words, default=["uvicorn", "granian"])
    parser.add_argument(
        "--sync", type=_words, default=["full", "normal"], help="[storage] synchronous values"
    )
    parser.add_argument("--no-live-pipeline", action="store_true", help="skip the pipeline-live runs")
    parser.add_argument(
        "--profile",
        choices=("auto", "on", "off"),
        default="auto",
        help="py-spy the node at the top client count (auto: when ours < 70%% of bare)",
    )
    parser.add_argument("--profile-seconds", type=int, default=6)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--bodies", type=int, default=8192, help="distinct bodies (default 8192)")
    parser.add_argument("--body-bytes", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    tool = "wrk" if wrk is not None and args.loadgen != "python" else "python-loadgen"
    began = time.monotonic()
    code = code_version()  # src/ may change while we run: note what we started with
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="coop-bench-ingest-", dir="/tmp"))
    print(f"seed {args.seed}; {args.bodies} bodies of ~{args.body_bytes} B; load by {tool}; work dir {work}")
    bodies = generate_bodies(args.seed, args.bodies, args.body_bytes)
    bodies_path = work / "bodies.jsonl"
    bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
    mean_size = sum(map(len, bodies)) / len(bodies)
    bench = Bench(args, Loader(bodies, bodies_path, tool), work)
    try:
        for server in args.servers:
            print(f"{_server_note(server)}:")
            bench.run_server(server)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - began

    table = markdown_table(
        [
            "server",
            "target",
            "clients",
            "201/s",
            "p50 ms",
            "p99 ms",
            "ours/bare",
            "CPU µs/201",
            "CPU bare/ours",
            "non-201",
            "CPU server/load/others",
        ],
        [
            [
                row.server,
                row.target,
                str(row.clients),
                f"{row.result.rate:,.0f}",
                f"{row.result.p50_ms:.2f}",
                f"{row.result.p99_ms:.2f}",
                "-" if row.target == "bare" else f"{bench.ratio(row.server, row.target, row.clients):.0%}",
                f"{row.cpu_per_201_us:,.0f}",
                "-"
                if row.target == "bare"
                else _percent(bench.cost_ratio(row.server, row.target, row.clients)),
                str(row.result.other + row.result.errors),
                f"{row.server_cpu:.2f} / {row.loader_cpu:.2f} / {row.other_cpu:.2f}",
            ]
            for row in bench.rows
        ],
    )
    verdicts = []
    for server in args.servers:
        for sync in args.sync:
            ratio, ours = (
                bench.ratio(server, f"ours {sync}", bench.top),
                bench.row(server, f"ours {sync}", bench.top),
            )
            if ratio is None or ours is None:
                continue
            first = ratio >= AIM_FIRST_BAR and ours.result.p99_ms < P99_BAR_MS
            cost = bench.cost_ratio(server, f"ours {sync}", bench.top)
            verdicts.append(
                f"- {server}, ours {sync}, {bench.top} clients: {ratio:.0%} of bare, p99 {ours.result.p99_ms:.1f} ms"
                f" (server CPU per 201: bare/ours {_percent(cost)})"
                f" — first bar (≥{AIM_FIRST_BAR:.0%}, p99 < {P99_BAR_MS:.0f} ms) {'met' if first else 'NOT met'};"
                f" target ≥{AIM_TARGET:.0%} {'met' if ratio >= AIM_TARGET else 'NOT met'}"
            )
    check_lines = [
        f"- db check {c.server} {c.target}: {c.rows} rows in contributions, {c.created} 201s counted,"
        f" {c.unanswered} unanswered: {'OK' if c.ok else 'MISMATCH'}"
        for c in bench.checks
    ]
    summary = [
        f"- load: {tool}"
        + (" (1 thread, bench/wrk_post.lua)" if tool == "wrk" else " (bench/loadgen.py)")
        + f"; per point a {args.warmup:g} s warm-up then {args.duration:g} s measured; "
        f"{args.bodies} distinct bodies, mean {mean_size:,.0f} B, seed {args.seed}; everything on {HOST}",
        "- servers: " + "; ".join(_server_note(s) for s in args.servers) + "; per server kind the bare app"
        " and the nodes run side by side (idle when not measured) and are measured in turn at each client count",
        "- ours: `coop serve` on a fresh data dir, rate limits raised, `[pipeline] interval_seconds = 3600`"
        " and the processor lock held by the benchmark (every new contribution pokes the scheduler, so the"
        " interval alone does not keep the pipeline out); the 'pipeline live' row leaves it running",
        "- bare: bench/bare_app.py (litestar, prebuilt msgspec decoder into an equivalent Struct, stores nothing)",
        f"- 201/s over the measured window; p50/p99 from {tool}; ours/bare = ratio of 201/s at the same server"
        " and client count; CPU in cores over the window (server process / load generator / every other"
        " process on the machine); CPU µs/201 = the server's CPU over its 201s, and CPU bare/ours the"
        " ratio of those (the throughput ratio two servers given the same CPU would show: on a shared"
        " machine the cores other jobs leave differ from one window to the next)",
        f"- load average when the run began: {load_before:.2f}; wall time of the whole run: {elapsed:.0f} s",
    ]
    print()
    print(table)
    print()
    print("\n".join(verdicts + check_lines))
    for name, lines in bench.profiles.items():
        print(f"\npy-spy of coop serve ({name}, {bench.top} clients):")
        print("\n".join(lines))
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            *summary,
            "",
            table,
            "",
        ]
        section += verdicts + check_lines
        for name, lines in bench.profiles.items():
            section += [
                "",
                f"py-spy of `coop serve` ({name}, {bench.top} clients):",
                "",
                "```",
                *lines,
                "```",
            ]
        print(f"\nappended to {append_section('Durable ingest', section)}")
    return 0 if all(c.ok for c in bench.checks) else 1


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@contextlib.contextmanager
def in_background(fn: Callable[[], object]) -> Iterator[None]:
    """Run ``fn`` in a thread for the duration of the block, joining it at the end."""
    thread = threading.Thread(target=fn, name="bench-load")
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=120)


if __name__ == "__main__":
    raise SystemExit(main())
