"""Federated evaluation: one label-agreement eval over 5 nodes x 2,000 records, beside the same eval central.

What runs, in one go (everything on 127.0.0.1):

1. **Setup**: five data directories made by ``coop init``, each filled in-process
   with 2,000 chats (``insert_contribution`` then ``process_pending``, as the
   integration tests do; every record has eval consent ``y``), ``min_records``
   set to 10, then five ``coop serve`` processes.  A label-agreement model
   (hashed bag of words, dim 2**16) is trained on separate chats.
2. **Central**: the same evaluation on the pooled records in this process:
   read the 10,000 eligible records from the five databases (the node's own
   query), ``load`` the model, ``statistics`` over all of them, ``finalize``.
3. **Node side**: each node's local eval interface called directly over HTTP
   (what the ClientApp does), one after another and then all five at once:
   the work a round cannot avoid, without Flower.
4. **Simulation engine, end to end**: ``coop eval request --local-node ...``
   (Ray start included) timed as a process, with the peak RSS of the driver and
   of every Ray process sampled from ``/proc`` while it runs.
5. **Simulation engine, per round**: a driver (this file, ``--sim-driver``)
   starts a simulation SuperLink (as ``coop eval request`` does) and ``flwr
   run``s ``bench/sim_driver_app``, whose ServerApp runs ``run_eval`` for several
   requests in turn, timing each: the first round pays for the actors' warm-up,
   the later ones are the per-round cost; start-up is what is left of the
   end-to-end time.
6. **Deployment engine**: ``deploy/flower_federation.py``'s ``FlowerFederation``
   for the five nodes (TLS, SuperNode auth; ``isolation="namespace"`` with the
   data directories hidden when run as root), then ``coop eval request
   --superlink ...`` timed end to end, with the RSS (and PSS) of each
   ``flower-supernode`` process tree (SuperNode, its SuperExec, ClientApp
   processes) before, during and after the run.

Every report is checked with ``coop eval verify`` and its aggregate compared,
integer for integer, with the central statistics.

    .venv/bin/python bench/bench_eval.py [--nodes 5] [--records 2000] [--rounds 3] [--no-deployment]
                                         [--no-record] [--keep]

Generated data lives under /tmp and is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from coop.eval import (
    Filters,
    LabelAgreement,
    NodeAnswer,
    Report,
    build_label_agreement_model,
    build_request,
    open_request,
)
from coop.eval import evaluators as _evaluators
from coop.eval.report import REPORT_TYPE
from coop.governance import Channel, Record
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.collective.settings import Actor
from coop.node.contributions.repository import insert_contribution
from coop.node.contributions.submission import ContributionRequest
from coop.node.ids import uuid7
from coop.node.members.accounts import Role
from coop.node.members.repository import add_member
from coop.node.runtime import Node
from results import append_section, code_version, command, machine, markdown_table

BIN: Final = Path(sys.executable).parent
COOP: Final = BIN / "coop"
ROOT: Final = Path(__file__).resolve().parent.parent
SEED: Final = 20261123
TASK: Final = "label-agreement"
ENV: Final = {
    **os.environ,
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray would otherwise report usage off the machine
    "PYTHONUNBUFFERED": "1",
}
# The Flower App of the per-round driver (its ServerApp runs `run_eval` once per request).
SIM_DRIVER_APP: Final = Path(__file__).resolve().parent / "sim_driver_app"
# The node's own query for eligible records (coop.node.evaluation.repository.eligible_rows, no filters).
ELIGIBLE_SQL: Final = (
    "SELECT t.record FROM contributions c JOIN contents t ON t.seq = c.seq"
    " WHERE c.state IN ('accepted', 'released') AND c.eval = 'y' ORDER BY c.seq"
)
_RECORD: Final = msgspec.json.Decoder(Record)
_ANSWER: Final = msgspec.json.Decoder(NodeAnswer)
_REPORT: Final = msgspec.json.Decoder(Report)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TOPICS: Final = _words(
    "taxes rent visa pension invoice mortgage insurance contract budget payroll lease refund "
    "shipping warranty subscription loan deposit tuition benefits permit"
)
_FILLER: Final = _words(
    "the a to of and for with this that your you can should would will about when then also more "
    "some any each which how what where why please tell explain show help need want know form "
    "date month year office letter online account number step rule case amount file send pay"
)
_GOOD: Final = _words("thanks clear correct helpful exactly great perfect works solved precise")
_FAIL: Final = _words("wrong error incorrect confused mistake broken useless failed outdated misleading")


# --- records -------------------------------------------------------------------------------------


def chat(rng: random.Random, good: bool, marker: str) -> str:
    """A three-turn text chat (~60-100 words); its words lean to its label, 15% of the time the other way."""
    leaning = good if rng.random() > 0.15 else not good
    signal_words = _GOOD if leaning else _FAIL
    question = " ".join(rng.choices(_FILLER, k=rng.randint(8, 16)))
    answer = rng.choices(_FILLER, k=rng.randint(30, 60)) + rng.sample(signal_words, 2)
    answer += rng.sample(_GOOD + _FAIL, 2)
    rng.shuffle(answer)
    follow = [rng.choice(signal_words), *rng.choices(_FILLER, k=rng.randint(3, 8))]
    return (
        f"User: question {marker} about {rng.choice(_TOPICS)}: {question}?\n"
        f"Assistant: {' '.join(answer)}.\nUser: {' '.join(follow)}."
    )


def fill(root: Path, rng: random.Random, count: int, prefix: str) -> str:
    """``count`` accepted chats with eval consent y in ``root``; returns the node id."""
    node = Node(root)
    try:
        member = node.store.write(
            lambda c: add_member(c, name="writer", role=Role.MEMBER, salt=node.salt, now=node.now())
        )[0]
        submissions = []
        for i in range(count):
            good = rng.random() < 0.5
            body = {
                "label": "good" if good else "fail",
                "consent": True,
                "format": "text",
                "content": chat(rng, good, f"{prefix}-{i:05d}"),
                "eval": "y",
                "scope": rng.choice(["node", "federation", "public"]),
            }
            request = msgspec.json.decode(msgspec.json.encode(body), type=ContributionRequest)
            submissions.append(node.build_submission(request, channel=Channel.API, member=member)[0])

        def insert_all(conn: sqlite3.Connection) -> None:
            now = node.now()
            for sub in submissions:
                insert_contribution(
                    conn, uid=uuid7(), member=member, submission=sub, now=now, idempotency=None, client=None
                )

        node.store.write(insert_all)
        with node.processor_lock():
            node.process_pending()
        node.change_settings({"eval_policy.min_records": 10}, actor=Actor("bench", admin=True))
        return node.identity.node_id
    finally:
        node.close()


def eligible_records(root: Path) -> list[Record]:
    with closing(sqlite3.connect(f"file:{root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        rows = conn.execute(ELIGIBLE_SQL).fetchall()
    return [_RECORD.decode(row[0]) for row in rows if row[0] is not None]


def train_model(seed: int, count: int = 600) -> bytes:
    rng = random.Random(seed)
    training = [(chat(rng, good, "train"), good) for good in (rng.random() < 0.5 for _ in range(count))]
    return build_label_agreement_model(training, seed=seed)


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_coop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(COOP), *args], capture_output=True, text=True, env=ENV, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"coop {' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-800:]}")
    return result


def stop_group(proc: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """SIGTERM the process group we started (SIGKILL after ``grace``)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class Served:
    """``coop serve DIR`` in its own process group."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = root / "keys" / "eval.token"
        self.log = root.parent / f"{root.name}-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Served:
        command = [str(COOP), "serve", str(self.root), "--port", str(self.port), "--server", "granian"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coop serve exited early: {self.log.read_text()[-800:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"coop serve did not answer in {timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


# --- memory: process trees read from /proc --------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks since boot) of ``pid``, or None if it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _boot_time() -> float:
    """When the machine booted, in epoch seconds (/proc/uptime is to 10 ms; btime only to the second)."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime


_BOOT: Final = _boot_time()
_TICK: Final = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; zeros for a kernel thread or a process that is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    """A short name: Ray's process title (``ray::...``), else the first argument that is not python."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    args = [a for a in raw.decode(errors="replace").split("\0") if a]
    if not args:
        return "?"
    if args[0].startswith("ray::"):
        return args[0].split()[0]
    for i, arg in enumerate(args):
        base = os.path.basename(arg)
        if base == "-m" and i + 1 < len(args):
            return args[i + 1]
        if base.startswith(("python", "-")) or base in ("sh", "unshare", "env"):
            continue
        return base
    return os.path.basename(args[0])


@dataclass
class Seen:
    """One process of a sampled tree: when it was seen, its peak RSS (VmHWM) and PSS."""

    pid: int
    start: int  # clock ticks since boot, as /proc says: with the pid, who this process is
    name: str
    tree: str
    first: float  # first and last time a sample saw it (epoch seconds)
    last: float
    hwm_kb: int = 0
    rss_kb: int = 0
    pss_kb: int = 0
    peak_pss_kb: int = 0

    @property
    def started(self) -> float:
        """When the process started (epoch seconds, to a clock tick)."""
        return _BOOT + self.start / _TICK


@dataclass
class TreeSample:
    at: float
    rss_kb: dict[str, int] = field(default_factory=dict)
    pss_kb: dict[str, int] = field(default_factory=dict)


class Sampler(threading.Thread):
    """Every ``interval`` s: the processes under each root pid, their RSS/PSS and the trees' sums."""

    def __init__(self, roots: dict[str, int], *, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.seen: dict[tuple[int, int], Seen] = {}
        self.samples: list[TreeSample] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> TreeSample:
        now = time.time()
        parents: dict[int, list[int]] = {}
        starts: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
                starts[int(entry.name)] = stat[1]
        result = TreeSample(at=now)
        for tree, root in self.roots.items():
            if root not in starts:
                continue
            stack, total_rss, total_pss = [root], 0, 0
            while stack:
                pid = stack.pop()
                stack.extend(parents.get(pid, ()))
                rss, hwm = _status_kb(pid)
                if rss == 0:
                    continue
                pss = _pss_kb(pid)
                key = (pid, starts[pid])
                with self._lock:
                    seen = self.seen.get(key)
                    if seen is None:
                        seen = self.seen[key] = Seen(pid, starts[pid], _name(pid), tree, now, now)
                    seen.last, seen.rss_kb, seen.pss_kb = now, rss, pss
                    name = _name(pid)  # Ray renames its workers once they hold an actor
                    if name != "?":
                        seen.name = name
                    seen.hwm_kb = max(seen.hwm_kb, hwm)
                    seen.peak_pss_kb = max(seen.peak_pss_kb, pss)
                total_rss += rss
                total_pss += pss
            result.rss_kb[tree], result.pss_kb[tree] = total_rss, total_pss
        with self._lock:
            self.samples.append(result)
        return result

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.sample()

    def peak(self, tree: str, since: float = 0.0, until: float = float("inf")) -> tuple[int, int]:
        """The largest summed (RSS, PSS) of ``tree`` between two times, in KiB."""
        window = [s for s in self.samples if since <= s.at <= until and tree in s.rss_kb]
        if not window:
            return 0, 0
        return max(s.rss_kb[tree] for s in window), max(s.pss_kb[tree] for s in window)

    def processes(self, tree: str) -> list[Seen]:
        return sorted((s for s in self.seen.values() if s.tree == tree), key=lambda s: s.first)

    def end_leftovers(
        self, trees: Sequence[str] = ("run",), *, grace: float = 10.0
    ) -> tuple[list[str], float]:
        """Wait up to ``grace`` s for every process seen in ``trees`` to exit, then SIGTERM what is left.

        Returns the names of the processes still alive after the grace, and how long the last of the
        others took to go.
        """
        waiting = [seen for seen in self.seen.values() if seen.tree in trees]
        started = time.monotonic()
        slowest = 0.0
        while waiting and time.monotonic() - started < grace:
            alive = []
            for seen in waiting:
                stat = _stat(seen.pid)
                if stat is not None and stat[1] == seen.start:
                    alive.append(seen)
            if len(alive) < len(waiting):
                slowest = time.monotonic() - started
            waiting = alive
            if waiting:
                time.sleep(0.1)
        left = []
        for seen in waiting:
            left.append(f"{seen.name} ({seen.pid})")
            with suppress(ProcessLookupError):
                os.kill(seen.pid, signal.SIGTERM)
        return left, slowest


def mib(kb: float) -> str:
    return f"{kb / 1024:,.0f}"


# --- evaluation: central, node side, checks -------------------------------------------------------


@dataclass
class Central:
    statistics: dict[str, int]
    metrics: dict[str, float]
    records: int
    read_s: float
    load_s: float
    stats_s: float
    finalize_s: float

    @property
    def total_s(self) -> float:
        return self.read_s + self.load_s + self.stats_s + self.finalize_s


def central(roots: Sequence[Path], artifact: bytes) -> Central:
    """Load, statistics over every eligible record of every node, finalize: timed by part."""
    evaluator = LabelAgreement()
    t0 = time.perf_counter()
    records = [record for root in roots for record in eligible_records(root)]
    t1 = time.perf_counter()
    model = evaluator.load(artifact)
    t2 = time.perf_counter()
    stats = evaluator.statistics(model, records)
    t3 = time.perf_counter()
    metrics = evaluator.finalize(stats)
    t4 = time.perf_counter()
    return Central(stats, metrics, len(records), t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def new_request(seed: bytes, artifact: bytes, targets: Sequence[str], purpose: str) -> bytes:
    return build_request(
        signer=Signer(seed),
        task=TASK,
        model_name="bench-model.npz",
        artifact=artifact,
        targets=targets,
        purpose=purpose,
        filters=Filters(),
        now=int(time.time()),
        lifetime=3600,
        nonce=secrets.token_hex(12),
    )


def node_answer(served: Served, request: bytes, artifact: bytes) -> tuple[float, NodeAnswer]:
    """What the ClientApp does: POST the request and the model to the node's local interface."""
    token = served.token_file.read_text(encoding="ascii").strip()
    body = msgspec.json.encode(
        {"request": msgspec.Raw(request), "artifact": base64.b64encode(artifact).decode()}
    )
    started = time.perf_counter()
    response = httpx.post(
        f"{served.url}/api/v1/eval/local",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, _ANSWER.decode(response.content)


def check_report(path: Path, truth: Central, nodes: int) -> tuple[bool, str]:
    """``coop eval verify`` on the report, and its aggregate against the central statistics."""
    verify = subprocess.run(
        [str(COOP), "eval", "verify", str(path), "--json"],
        capture_output=True, text=True, env=ENV, timeout=120, check=False,
    )  # fmt: skip
    verified = verify.returncode == 0 and json.loads(verify.stdout).get("ok") is True
    _, payload = open_envelope(path.read_bytes(), payload_type=REPORT_TYPE, max_bytes=1 << 26)
    report = _REPORT.decode(payload)
    aggregate = report.aggregate
    same_stats = aggregate.statistics == truth.statistics
    same_metrics = aggregate.metrics == {k: f"{v:.6f}" for k, v in truth.metrics.items()}
    answered = sum(1 for a in report.answers if a.attestation is not None)
    ok = verified and same_stats and same_metrics and aggregate.records == truth.records and answered == nodes
    differing = sum(1 for k, v in truth.statistics.items() if aggregate.statistics.get(k) != v)
    text = (
        f"verify {'ok' if verified else 'FAILED: ' + (verify.stdout + verify.stderr).strip()[-300:]}; "
        f"{answered}/{nodes} nodes answered; records {aggregate.records:,} vs central {truth.records:,}; "
        f"{len(truth.statistics)} statistics {'all equal' if same_stats else f'{differing} differ'}; "
        f"metrics {'equal' if same_metrics else 'DIFFER'} (accuracy {aggregate.metrics.get('accuracy')}, "
        f"auc {aggregate.metrics.get('auc')})"
    )
    return ok, text


# --- the simulation driver (a separate process) ----------------------------------------------------


def sim_driver(spec_path: Path) -> int:
    """Our own simulation SuperLink and `flwr run bench/sim_driver_app`: a ServerApp that runs
    ``run_eval`` once per request, timing each round (the same runtime `coop eval request` uses)."""
    launched = time.time()
    spec = json.loads(spec_path.read_text())
    from coop.node.evaluation.flower_run import SimulationSuperLink, federation_config, flwr_run

    imported = time.time()
    folder = Path(spec["folder"])
    server_out = Path(spec["server_out"])
    nodes = ";".join(f"{url},{token_file}" for url, token_file in spec["endpoints"])
    with SimulationSuperLink(folder / "superlink") as address:
        flwr_run(
            SIM_DRIVER_APP,
            folder / "flwr-home",
            {"address": address, "insecure": True},
            run_config=f"coop-bench-spec='{spec_path}' coop-local-nodes='{nodes}'",
            federation_config=federation_config(len(spec["endpoints"])),
        )
        deadline = time.monotonic() + 300
        while not server_out.exists() and time.monotonic() < deadline:
            time.sleep(0.25)
    if not server_out.exists():
        raise RuntimeError(f"the driver's ServerApp wrote no timings; see {folder / 'superlink'}")
    timings = json.loads(server_out.read_text())
    finished = time.time()
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "launched": launched,
                "imported": imported,
                "main": timings["main"],
                "main_done": timings["main_done"],
                "finished": finished,
                "rounds": timings["rounds"],
            }
        )
    )
    return 0


@dataclass
class Run:
    """A process run under the sampler."""

    code: int
    seconds: float
    sampler: Sampler
    lingered: float  # how long after it exited the last of its descendants went
    left: list[str]  # descendants still alive 10 s after it exited (then ended by us)


def run_sampled(
    argv: list[str], log: Path, timeout: float, *, extra_roots: dict[str, int] | None = None
) -> Run:
    """Run ``argv`` in its own process group, sampling its tree (and ``extra_roots``)."""
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        sampler = Sampler({"run": proc.pid, **(extra_roots or {})})
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            code = 124
        elapsed = time.monotonic() - started
        sampler.stop()
    left, lingered = sampler.end_leftovers(("run",))
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # anything of ours the sampler never saw
    return Run(code, elapsed, sampler, lingered, left)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def by_name(processes: Sequence[Seen]) -> dict[str, list[Seen]]:
    groups: dict[str, list[Seen]] = {}
    for p in processes:
        groups.setdefault(p.name, []).append(p)
    return dict(sorted(groups.items()))


# --- the parts of the benchmark ------------------------------------------------------------------


@dataclass
class Setup:
    base: Path
    roots: list[Path]
    ids: list[str]
    served: list[Served]
    key: Path
    seed: bytes
    artifact: bytes
    model_path: Path
    seconds: dict[str, float]


@dataclass
class Findings:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def check(self, name: str, report: Path, truth: Central, nodes: int) -> None:
        ok, text = check_report(report, truth, nodes)
        self.checks.append((name, ok, text))
        print(f"  check {name}: {'OK' if ok else 'FAILED'}: {text}", flush=True)

    def after(self, what: str, run: Run) -> None:
        if run.lingered > 1.0:
            print(f"  the last of its processes exited {run.lingered:.1f} s after {what} did", flush=True)
        if run.left:
            self.found.append(
                f"still running 10 s after {what} exited (ended by the benchmark): {', '.join(run.left)}"
            )


def setup(base: Path, nodes: int, records: int, served: list[Served]) -> Setup:
    rng = random.Random(SEED)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    roots = []
    for i in range(nodes):
        root = base / f"node{i}"
        run_coop("init", str(root), "--name", f"Bench Co-op {i}")
        roots.append(root)
    seconds["init"] = time.monotonic() - t0
    t0 = time.monotonic()
    ids = [fill(root, rng, records, f"n{i}") for i, root in enumerate(roots)]
    seconds["fill"] = time.monotonic() - t0
    counts = [len(eligible_records(root)) for root in roots]
    if counts != [records] * nodes:
        raise RuntimeError(f"expected {records} eligible records per node, found {counts}")
    t0 = time.monotonic()
    for root in roots:
        served.append(Served(root).start())
    seconds["serve"] = time.monotonic() - t0
    key = base / "requester.key"
    run_coop("eval", "keygen", str(key))
    t0 = time.monotonic()
    artifact = train_model(SEED + 1)
    seconds["train"] = time.monotonic() - t0
    model_path = base / "model.npz"
    model_path.write_bytes(artifact)
    print(
        f"setup: coop init x{nodes} {seconds['init']:.1f} s; fill {nodes} x {records:,} {seconds['fill']:.1f} s;"
        f" coop serve x{nodes} {seconds['serve']:.1f} s; model {len(artifact):,} B in {seconds['train']:.1f} s",
        flush=True,
    )
    return Setup(base, roots, ids, served, key, key.read_bytes(), artifact, model_path, seconds)


@dataclass
class NodeSide:
    cold: list[float]
    warm: list[float]
    concurrent: float


def node_side(s: Setup) -> NodeSide:
    """Each node's local interface over HTTP: one after another (cold, then warm), then all at once."""

    def one_by_one(purpose: str) -> list[float]:
        request = new_request(s.seed, s.artifact, s.ids, purpose)
        times = []
        for node in s.served:
            elapsed, answer = node_answer(node, request, s.artifact)
            if answer.attestation is None:
                raise RuntimeError(f"a node declined: {answer.decline} {answer.detail}")
            times.append(elapsed)
        return times

    cold = one_by_one("bench: node side, first call")
    warm = one_by_one("bench: node side, second call")
    request = new_request(s.seed, s.artifact, s.ids, "bench: node side, concurrent")
    with ThreadPoolExecutor(len(s.served)) as pool:
        started = time.perf_counter()
        answers = list(pool.map(lambda n: node_answer(n, request, s.artifact), s.served))
        concurrent = time.perf_counter() - started
    if any(answer.attestation is None for _, answer in answers):
        raise RuntimeError(f"a node declined: {[a.decline for _, a in answers]}")
    side = NodeSide(cold, warm, concurrent)
    print(
        "node side (the local interface over HTTP, no Flower): first calls "
        + ", ".join(f"{t:.2f}" for t in cold)
        + " s; second calls "
        + ", ".join(f"{t:.2f}" for t in warm)
        + f" s; all {len(s.served)} at once {concurrent:.2f} s",
        flush=True,
    )
    return side


def request_argv(s: Setup, out: Path, purpose: str) -> list[str]:
    argv = [str(COOP), "eval", "request", "--key", str(s.key), "--task", TASK, "--model", str(s.model_path)]
    argv += ["--purpose", purpose, "--out", str(out), "--timeout", "120"]
    for node_id in s.ids:
        argv += ["--target", node_id]
    return argv


def simulation_cli(s: Setup, truth: Central, findings: Findings) -> Run:
    out = s.base / "sim-cli" / "report.json"
    out.parent.mkdir()
    argv = request_argv(s, out, "bench: simulation engine")
    for node in s.served:
        argv += ["--local-node", f"{node.url},{node.token_file}"]
    print("simulation engine: coop eval request --local-node ... (Ray start included)", flush=True)
    run = run_sampled(argv, s.base / "sim-cli.log", 300)
    if run.code != 0:
        raise RuntimeError(
            f"coop eval request (simulation) exited {run.code}:\n{tail(s.base / 'sim-cli.log')}"
        )
    print(f"  {run.seconds:.1f} s end to end", flush=True)
    findings.check("simulation, `coop eval request --local-node`", out, truth, len(s.ids))
    findings.after("`coop eval request --local-node`", run)
    return run


@dataclass
class Rounds:
    run: Run
    rounds: list[dict[str, float]]
    to_main: float  # from launching the driver to the ServerApp's main
    imports: float  # of which the driver's imports (coop, flwr)
    after_last: float  # from the end of the last round to the driver's exit

    @property
    def per_round(self) -> float:
        """The median of the rounds after the first."""
        steady = sorted(r["seconds"] for r in self.rounds[1:]) or [self.rounds[0]["seconds"]]
        return steady[len(steady) // 2]


def simulation_rounds(s: Setup, count: int, truth: Central, findings: Findings) -> Rounds:
    folder = s.base / "sim-driver"
    folder.mkdir()
    requests, answers, reports = [], [], []
    for r in range(count):
        path = folder / f"request-{r}.json"
        path.write_bytes(new_request(s.seed, s.artifact, s.ids, f"bench: simulation round {r + 1}"))
        requests.append(str(path))
        answers.append(folder / f"answers-{r}.json")
        reports.append(folder / f"report-{r}.json")
    spec = folder / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "endpoints": [[n.url, str(n.token_file.resolve())] for n in s.served],
                "nodes": len(s.served),
                "folder": str(folder),
                "server_out": str(folder / "server-timings.json"),
                "artifact": str(s.model_path),
                "requests": requests,
                "answers": [str(a) for a in answers],
                "out": str(folder / "timings.json"),
            }
        )
    )
    spec.chmod(0o600)
    print(f"simulation engine: {count} evaluations inside one Flower run (driver)", flush=True)
    launched = time.time()
    argv = [sys.executable, str(Path(__file__).resolve()), "--sim-driver", str(spec)]
    run = run_sampled(argv, s.base / "sim-driver.log", 300)
    if run.code != 0:
        raise RuntimeError(f"the simulation driver exited {run.code}:\n{tail(s.base / 'sim-driver.log')}")
    timings = json.loads((folder / "timings.json").read_text())
    rounds = Rounds(
        run=run,
        rounds=timings["rounds"],
        to_main=timings["main"] - launched,
        imports=timings["imported"] - timings["launched"],
        after_last=run.seconds - (timings["main_done"] - launched),
    )
    print(
        f"  {run.seconds:.1f} s in all; launch to ServerApp main {rounds.to_main:.1f} s; rounds "
        + ", ".join(f"{r['seconds']:.2f}" for r in rounds.rounds)
        + f" s; after the last round {rounds.after_last:.1f} s",
        flush=True,
    )
    # The ServerApp hands back answers; the report is signed here, as `coop eval request` does.
    from coop.eval.flower import decode_answers, sign_report

    for r, report in enumerate(reports):
        now = int(time.time())
        verified = open_request(Path(requests[r]).read_bytes(), now=now)
        kept = decode_answers(answers[r].read_bytes())
        report.write_bytes(sign_report(verified, kept, now=now, signer=Signer(s.seed)))
        findings.check(f"simulation, driver round {r + 1}", report, truth, len(s.ids))
    findings.after("the simulation driver", run)
    return rounds


def simulation_memory(sampler: Sampler) -> tuple[str, dict[str, float]]:
    """Table of a simulation's processes by kind, and the figures the summary needs (MiB)."""
    procs = sampler.processes("run")
    driver = procs[0]
    workers = [p for p in procs if p.name.startswith("ray::")]
    actors = [p for p in workers if "ClientAppActor" in p.name]
    services = [p for p in procs if p is not driver and p not in workers]
    rows = [["driver (`coop eval request`)", "1", mib(driver.hwm_kb), mib(driver.peak_pss_kb)]]
    for name, group in by_name(workers).items():
        rows.append(
            [
                f"Ray worker `{name}`",
                str(len(group)),
                " / ".join(mib(p.hwm_kb) for p in group),
                " / ".join(mib(p.peak_pss_kb) for p in group),
            ]
        )
    for name, group in by_name(services).items():
        rows.append(
            [
                f"Ray process `{name}` (sum)",
                str(len(group)),
                mib(sum(p.hwm_kb for p in group)),
                mib(sum(p.peak_pss_kb for p in group)),
            ]
        )
    tree_rss, tree_pss = sampler.peak("run")
    rows.append(["whole tree, peak of the sum", str(len(procs)), mib(tree_rss), mib(tree_pss)])
    table = markdown_table(["process", "count", "peak RSS MiB", "peak PSS MiB"], rows)
    actor_rss = sum(p.hwm_kb for p in actors) / 1024
    return table, {
        "driver_rss": driver.hwm_kb / 1024,
        "actors": float(len(actors)),
        "actor_rss_each": actor_rss / len(actors) if actors else 0.0,
        "actor_rss": actor_rss,
        "tree_rss": tree_rss / 1024,
        "tree_pss": tree_pss / 1024,
    }


@dataclass
class Deployment:
    isolation: str
    connect_s: float
    run: Run
    table: str
    per_supernode: dict[str, float]  # MiB, means over the SuperNode trees
    timeline: list[str]


def _spans(processes: Sequence[Seen], since: float) -> str:
    return ", ".join(f"{p.started - since:.1f}–{p.last - since:.1f}" for p in processes)


def deployment(s: Setup, truth: Central, findings: Findings) -> Deployment:
    """FlowerFederation for the nodes, one `coop eval request --superlink`, memory per SuperNode tree."""
    sys.path.insert(0, str(ROOT / "deploy"))
    from flower_federation import FlowerFederation

    isolation = "namespace" if os.geteuid() == 0 and shutil.which("unshare") else "none"
    workdir = Path(tempfile.mkdtemp(prefix="coop-bench-flower-", dir="/tmp"))
    shared = Path(tempfile.mkdtemp(prefix="coop-bench-shared-", dir="/tmp"))
    federation = FlowerFederation(
        workdir, [(n.url, n.token_file) for n in s.served], hide=s.roots, isolation=isolation
    )
    print(
        f"deployment engine: FlowerFederation ({isolation} isolation) for {len(s.served)} nodes", flush=True
    )
    trees: dict[str, int] = {}
    seen: Sampler | None = None
    try:
        t0 = time.monotonic()
        federation.start()
        logs = [workdir / f"supernode-{i}" / "supernode.log" for i in range(len(s.served))]

        def connected() -> bool:
            return all(p.exists() and "SuperNode ID" in p.read_text(errors="replace") for p in logs)

        deadline = time.monotonic() + 60
        while not connected() and time.monotonic() < deadline:
            time.sleep(0.2)
        connect_s = time.monotonic() - t0
        if not connected():
            raise RuntimeError(
                "the SuperNodes did not connect in 60 s:\n" + "\n".join(tail(p, 5) for p in logs)
            )
        trees = {"superlink": federation.processes[0].pid}
        trees |= {f"supernode-{i}": p.pid for i, p in enumerate(federation.processes[1:])}
        time.sleep(2.0)  # let the idle processes settle
        idle = Sampler(trees).sample()
        out = s.base / "deploy" / "report.json"
        out.parent.mkdir()
        argv = request_argv(s, out, "bench: deployment engine")
        argv += ["--superlink", federation.address, "--root-certificates", str(federation.ca)]
        argv += ["--shared-dir", str(shared)]
        print(f"  connected {connect_s:.1f} s after start; coop eval request --superlink ...", flush=True)
        began = time.time()
        run = run_sampled(argv, s.base / "deploy.log", 300, extra_roots=trees)
        ended = began + run.seconds
        seen = run.sampler
        if run.code != 0:
            raise RuntimeError(
                f"coop eval request (deployment) exited {run.code}:\n{tail(s.base / 'deploy.log')}"
            )
        print(f"  {run.seconds:.1f} s end to end", flush=True)
        findings.check("deployment, `coop eval request --superlink`", out, truth, len(s.ids))
        findings.after("`coop eval request --superlink`", run)
        time.sleep(5.0)  # after: once whatever the run started has had time to exit
        after_sampler = Sampler(trees)
        after = after_sampler.sample()

        rows = []
        means: dict[str, list[float]] = {"idle": [], "peak": [], "peak_pss": [], "after": []}
        for tree in trees:
            peak_rss, peak_pss = seen.peak(tree, began, ended)
            parts = by_name(seen.processes(tree))
            rows.append(
                [
                    tree,
                    mib(idle.rss_kb.get(tree, 0)),
                    mib(peak_rss),
                    mib(peak_pss),
                    mib(after.rss_kb.get(tree, 0)),
                    "; ".join(
                        f"{name} x{len(group)}: {' / '.join(mib(p.hwm_kb) for p in group)}"
                        for name, group in parts.items()
                    ),
                ]
            )
            if tree.startswith("supernode"):
                means["idle"].append(idle.rss_kb.get(tree, 0) / 1024)
                means["peak"].append(peak_rss / 1024)
                means["peak_pss"].append(peak_pss / 1024)
                means["after"].append(after.rss_kb.get(tree, 0) / 1024)
        table = markdown_table(
            [
                "tree",
                "idle RSS",
                "peak RSS during",
                "peak PSS during",
                "RSS 5 s after",
                "processes: peak RSS each",
            ],
            rows,
        )
        # When things happened: process lifetimes, seconds after `coop eval request` started.
        timeline = []
        flwr_run = [p for p in seen.processes("run") if p.name == "flwr"]
        if flwr_run:
            timeline.append(f"`flwr run` {_spans(flwr_run, began)}")
        serverapps = [p for p in seen.processes("superlink") if p.started >= began]
        for name, group in by_name(serverapps).items():
            timeline.append(f"{name} {_spans(group, began)}")
        per_tree = [
            sorted(
                (p for p in seen.processes(f"supernode-{i}") if p.started >= began), key=lambda p: p.started
            )
            for i in range(len(s.served))
        ]
        for k in range(max((len(t) for t in per_tree), default=0)):
            kth = [t[k] for t in per_tree if len(t) > k]
            names = sorted({p.name for p in kth})
            timeline.append(
                f"{'/'.join(names)} #{k + 1} under {len(kth)} SuperNodes: started"
                f" {min(p.started for p in kth) - began:.1f}–{max(p.started for p in kth) - began:.1f},"
                f" last seen {min(p.last for p in kth) - began:.1f}–{max(p.last for p in kth) - began:.1f}"
            )
        timeline.append(f"`coop eval request` exited {run.seconds:.1f}")
        print(table, flush=True)
        print("  timeline (s after `coop eval request` started): " + "; ".join(timeline), flush=True)
        return Deployment(
            isolation=isolation,
            connect_s=connect_s,
            run=run,
            table=table,
            per_supernode={k: sum(v) / len(v) for k, v in means.items() if v},
            timeline=timeline,
        )
    finally:
        federation.stop()
        if seen is not None:
            left, _ = seen.end_leftovers(tuple(trees))
            if left:
                findings.found.append(f"still running 10 s after FlowerFederation.stop(): {', '.join(left)}")
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


# --- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--records", type=int, default=2000, help="records per node")
    parser.add_argument("--rounds", type=int, default=3, help="evaluations inside one simulation run")
    parser.add_argument("--no-deployment", action="store_true", help="skip the deployment engine")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the generated data under /tmp")
    parser.add_argument("--sim-driver", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sim_driver is not None:
        return sim_driver(args.sim_driver)

    began = time.monotonic()
    code = code_version()
    load_before = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="coop-bench-eval-", dir="/tmp"))
    base.chmod(0o755)  # the SuperNodes' user must reach their folders; the data directories get hidden
    print(f"seed {SEED}; data under {base}", flush=True)
    served: list[Served] = []
    findings = Findings()
    try:
        s = setup(base, args.nodes, args.records, served)

        _evaluators._token_hash.cache_clear()  # the first run hashes every token cold, as a fresh node does
        cold = central(s.roots, s.artifact)
        warm = min((central(s.roots, s.artifact) for _ in range(3)), key=lambda c: c.total_s)
        if warm.statistics != cold.statistics:
            raise RuntimeError("central statistics differ between runs")
        truth = cold
        print(
            f"central over {truth.records:,} records: {cold.total_s:.3f} s (read {cold.read_s:.3f}, load"
            f" {cold.load_s:.3f}, statistics {cold.stats_s:.3f}, finalize {cold.finalize_s * 1e3:.1f} ms);"
            f" warm, best of 3: {warm.total_s:.3f} s",
            flush=True,
        )

        side = node_side(s)
        cli = simulation_cli(s, truth, findings)
        sim_table, sim_mem = simulation_memory(cli.sampler)
        print(sim_table, flush=True)
        rounds = simulation_rounds(s, args.rounds, truth, findings)
        _, driver_mem = simulation_memory(rounds.run.sampler)
        deployed = None if args.no_deployment else deployment(s, truth, findings)
        elapsed = time.monotonic() - began

        base_s = cold.total_s
        per_round = rounds.per_round
        time_rows = [
            [
                "central: read + load + statistics + finalize",
                f"{cold.total_s:.2f}",
                "1",
                "this process, cold",
            ],
            ["central, warm (best of 3)", f"{warm.total_s:.2f}", f"{warm.total_s / base_s:.2f}", ""],
            [
                f"node side: {len(s.ids)} local-interface calls at once (HTTP, no Flower)",
                f"{side.concurrent:.2f}",
                f"{side.concurrent / base_s:.1f}",
                f"one node: first call {statistics.median(side.cold):.2f} s, second {statistics.median(side.warm):.2f} s (medians)",
            ],
            [
                "simulation: `coop eval request --local-node`, end to end",
                f"{cli.seconds:.1f}",
                f"{cli.seconds / base_s:.0f}",
                "CLI start, Ray start, actors, one round, Ray shutdown, verify",
            ],
            [
                "simulation: one round with the engine up (median of rounds 2+)",
                f"{per_round:.2f}",
                f"{per_round / base_s:.1f}",
                "first round " + f"{rounds.rounds[0]['seconds']:.2f} s (actors start, ClientApp imports)",
            ],
            [
                "simulation: fixed cost = end to end − one round",
                f"{cli.seconds - per_round:.1f}",
                "",
                f"driver: launch→ServerApp main {rounds.to_main:.1f} s, first round − steady round"
                f" {rounds.rounds[0]['seconds'] - per_round:.1f} s, after last round {rounds.after_last:.1f} s",
            ],
        ]
        if deployed is not None:
            time_rows.append(
                [
                    "deployment: `coop eval request --superlink`, end to end",
                    f"{deployed.run.seconds:.1f}",
                    f"{deployed.run.seconds / base_s:.0f}",
                    "SuperLink and SuperNodes up and connected beforehand",
                ]
            )
        time_table = markdown_table(["what", "seconds", "× central", "notes"], time_rows)
        round_table = markdown_table(
            [
                "round",
                "run_eval s",
                "messages pushed",
                "first answer",
                "last answer",
                "report after that",
            ],
            [
                [
                    str(i + 1),
                    f"{r['seconds']:.2f}",
                    str(r["pushed"]),
                    f"{r['eval_first']:.2f}",
                    f"{r['eval_last']:.2f}",
                    f"{r['seconds'] - r['eval_last']:.2f}",
                ]
                for i, r in enumerate(rounds.rounds)
            ],
        )
        actors = int(sim_mem["actors"])
        sim_note = (
            f"{args.nodes} virtual SuperNodes share {actors} ClientApp actors ({sim_mem['actor_rss_each']:,.0f} MiB"
            f" peak RSS each): {sim_mem['actor_rss'] / args.nodes:,.0f} MiB of actor RSS per SuperNode;"
            f" the whole tree (driver, Ray's processes, actors) peaked at {sim_mem['tree_rss']:,.0f} MiB RSS /"
            f" {sim_mem['tree_pss']:,.0f} MiB PSS, {sim_mem['tree_pss'] / args.nodes:,.0f} MiB PSS per SuperNode."
            f"  The driver of the rounds peaked at {driver_mem['tree_rss']:,.0f} MiB RSS /"
            f" {driver_mem['tree_pss']:,.0f} MiB PSS for its tree."
        )
        print()
        print(time_table)
        print()
        print(round_table)
        print()
        print(sim_table)
        print(sim_note)
        if deployed is not None:
            print()
            print(deployed.table)
            m = deployed.per_supernode
            print(
                f"per SuperNode tree (mean): idle {m['idle']:,.0f} MiB RSS, peak {m['peak']:,.0f} MiB RSS"
                f" ({m['peak_pss']:,.0f} PSS) during the run, {m['after']:,.0f} MiB 5 s after"
            )
        print()
        for name, ok, text in findings.checks:
            print(f"check {name}: {'OK' if ok else 'FAILED'}: {text}")
        for item in findings.found:
            print(f"found: {item}")
        print(f"\nwall time {elapsed:.0f} s")

        if not args.no_record:
            section = [
                f"- command: `{command(__file__)}`",
                f"- machine: {machine()}; flwr {_version('flwr')}, ray {_version('ray')}",
                f"- code at start: {code}",
                f"- data: {args.nodes} nodes x {args.records:,} chats (3 turns, ~60-100 words, all with eval"
                f" consent y; seed {SEED}), each node its own `coop serve` (granian) on 127.0.0.1; model:"
                f" label-agreement, dim 2**16, {len(s.artifact):,} B, trained on 600 other chats",
                f"- setup: `coop init` x{args.nodes} {s.seconds['init']:.1f} s; in-process fill and pipeline"
                f" {s.seconds['fill']:.1f} s; `coop serve` x{args.nodes} up in {s.seconds['serve']:.1f} s",
                f"- central = in this process: read the {truth.records:,} eligible records from the five SQLite"
                f" files (the node's query, msgspec decode) {cold.read_s:.3f} s, `load` {cold.load_s * 1e3:.0f} ms,"
                f" `statistics` {cold.stats_s:.3f} s, `finalize` {cold.finalize_s * 1e3:.1f} ms, with the"
                " token-hash cache cleared first; warm = the same again, cache full",
                "- simulation engine as `coop eval request` runs it (Ray, `num_cpus` 2, one CPU per ClientApp"
                f" actor); per round: a driver (`--sim-driver`) whose ServerApp runs `run_eval` {args.rounds}"
                " times in one Flower run on a simulation SuperLink; nodes were warm by then (the node-side"
                " calls ran first)",
                "- memory sampled from /proc every 0.25 s: a process's peak RSS is its VmHWM; PSS from"
                " smaps_rollup (shared pages split among the processes sharing them); a tree's peak is the"
                " largest sum in one sample",
                f"- load average when the run began: {load_before:.2f}; wall time of the whole run: {elapsed:.0f} s",
                "",
                "### Time",
                "",
                time_table,
                "",
                "Rounds inside one Flower run (seconds from the round's start; each round = one evaluation"
                " message to every SuperNode, the replies pulled as they arrive):",
                "",
                round_table,
                "",
                f"### Memory, simulation engine (`coop eval request --local-node`, {args.nodes} virtual SuperNodes)",
                "",
                sim_table,
                "",
                sim_note,
            ]
            if deployed is not None:
                m = deployed.per_supernode
                section += [
                    "",
                    f"### Memory, deployment engine (MiB; isolation {deployed.isolation}, TLS, SuperNode auth)",
                    "",
                    deployed.table,
                    "",
                    f"Per SuperNode tree (mean of {args.nodes}): idle {m['idle']:,.0f} MiB RSS; during the run"
                    f" {m['peak']:,.0f} MiB RSS ({m['peak_pss']:,.0f} MiB PSS) at its peak; {m['after']:,.0f} MiB"
                    f" 5 s after.  The SuperNodes connected {deployed.connect_s:.1f} s after"
                    " `FlowerFederation.start()` began.",
                    "",
                    "Timeline of the deployment run (seconds after `coop eval request` started; process"
                    " lifetimes, last seen to 0.25 s): " + "; ".join(deployed.timeline) + ".",
                    "flwr 1.41 polls on fixed intervals: its grid's `send_and_receive` sleeps 3 s between pulls"
                    " (`flwr/superlink/grid/http_grid.py`; `run_eval` does not use it), an idle SuperNode 3 s"
                    " between pulls (`flwr/supernode/start_client_internal.py`), the SuperExec 1 s; `run_eval`"
                    " pushes one message per SuperNode and pulls the replies every 0.5 s, and `coop eval"
                    " request` looks for the report and the progress every 0.25 s.",
                ]
            section += ["", "### Checks", ""]
            section += [f"- {name}: {'OK' if ok else 'FAILED'}: {text}" for name, ok, text in findings.checks]
            if findings.found:
                section += ["", "### Found", "", *[f"- {item}" for item in findings.found]]
            path = append_section("Federated evaluation", section)
            print(f"appended to {path}")
        return 0 if all(ok for _, ok, _ in findings.checks) else 1
    finally:
        for node in served:
            node.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
