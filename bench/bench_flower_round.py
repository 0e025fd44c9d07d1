"""One Flower round in the deployment engine: a bare Flower evaluate app beside `coop eval request`.

Side by side in one run, on the SAME SuperLink and SuperNodes (``deploy/flower_federation.py``:
TLS, SuperNode auth, namespace isolation when run as root; everything on 127.0.0.1):

- **bare**: ``flwr run bench/bare_flower_app``: a ServerApp that sends one evaluate message to
  every connected SuperNode with ``grid.send_and_receive`` and writes a result file; the ClientApp
  answers with a trivial metric.  Timed from ``flwr run``'s start to the result file present.
- **ours**: ``coop eval request --superlink ...`` (label-agreement over every node), timed from its
  start to the signed report present at ``--out``.

Runs alternate (bare, ours, bare, ours, ...) after one unmeasured warm-up of each.  Each run is
cut into phases from process lifetimes (``/proc``, bench_eval's Sampler) and from the stamps the
ServerApps write: the bare app's ``bare-stamps-file``; ours, the progress file our ServerApp
writes next to the report (JSON lines) when there is one, else process timing only.  The nodes'
local eval interface is also called directly (no Flower) for the node-side cost.

    .venv/bin/python bench/bench_flower_round.py [--nodes 5] [--records 500] [--runs 3]
                                                 [--no-record] [--keep]

Setup (``coop init``, fill, ``coop serve``, the model) is bench_eval.py's, imported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench_eval import (
    BIN,
    ENV,
    ROOT,
    SEED,
    Central,
    Sampler,
    Served,
    Setup,
    _stat,
    _version,
    central,
    check_report,
    node_side,
    request_argv,
    setup,
    stop_group,
    tail,
)
from results import append_section, code_version, command, machine, markdown_table
from round_phases import PHASES, SPANS, SideTail, Stamps, from_side_events

BARE_APP: Final = Path(__file__).resolve().parent / "bare_flower_app"
TIMEOUT: Final = 300.0


@dataclass
class Outcome:
    engine: str
    index: int
    stamps: Stamps
    ok: bool
    text: str


# --- one run ------------------------------------------------------------------------------------


def run_once(
    engine: str,
    argv: list[str],
    env: dict[str, str],
    *,
    done: Path,
    written: Path,
    side: Path | None,
    trees: dict[str, int],
    log: Path,
) -> Stamps:
    """Start ``argv``; watch ``written`` (the ServerApp's file) and ``done`` (the requester's) appear,
    and the lines of ``side`` (the ServerApp's stamps or progress file: a directory means the first
    file in it whose name holds "progress") as they are written."""
    with log.open("ab") as out:
        start = time.time()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    sampler = Sampler({"run": proc.pid, **trees}, interval=0.2)
    sampler.start()
    stamps = Stamps(start=start)
    tail_ = SideTail(side)
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            now = time.time()
            tail_.read(now)
            if stamps.written is None and written.exists():
                stamps.written = now
            if stamps.done is None and done.exists():
                stamps.done = now
            if stamps.exited is None and proc.poll() is not None:
                stamps.exited = now
                if proc.returncode != 0:
                    raise RuntimeError(f"{engine} run exited {proc.returncode}:\n{tail(log)}")
            if stamps.done is not None and stamps.exited is not None:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"{engine} run: no result in {TIMEOUT:g} s:\n{tail(log)}")
        _quiesce(sampler, start)
        tail_.read(time.time())
    finally:
        sampler.stop()
        stop_group(proc)
    _from_processes(stamps, sampler, engine)
    from_side_events(stamps, tail_.events)
    return stamps


def _quiesce(sampler: Sampler, since: float, *, grace: float = 30.0) -> None:
    """Wait (bounded) until every process the run started under the SuperLink and SuperNodes is gone."""
    deadline = time.monotonic() + grace
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        time.sleep(0.3)
        with sampler._lock:
            started = [p for p in sampler.seen.values() if p.tree != "run" and p.started >= since - 0.05]
        alive = [p for p in started if (stat := _stat(p.pid)) is not None and stat[1] == p.start]
        quiet = quiet + 1 if not alive else 0


def _from_processes(stamps: Stamps, sampler: Sampler, engine: str) -> None:
    flwr = [p for p in sampler.processes("run") if p.name == "flwr"]
    if flwr:
        stamps.flwr_start = min(p.started for p in flwr)
        stamps.flwr_end = max(p.last for p in flwr)
    if engine == "bare" and stamps.exited is not None:
        stamps.flwr_end = min(stamps.exited, stamps.flwr_end or stamps.exited)  # the root itself
    servers = [
        p
        for p in sampler.processes("superlink")
        if "serverapp" in p.name and p.started >= stamps.start - 0.05
    ]
    if servers:
        stamps.serverapp = min(p.started for p in servers)
    for tree in sampler.roots:
        if tree.startswith("supernode"):
            stamps.clientapps += [
                (p.started, p.last)
                for p in sampler.processes(tree)
                if "clientapp" in p.name and p.started >= stamps.start - 0.05
            ]


# --- the two engines ------------------------------------------------------------------------------


def bare_run(index: int, folder: Path, home: Path, nodes: int, trees: dict[str, int], poll: float) -> Outcome:
    """``flwr run`` the bare app: ``poll`` 0 = one ``send_and_receive``, else pull every ``poll`` s."""
    engine = "bare-poll" if poll > 0 else "bare"
    run_dir = folder / f"{engine}-{index}"
    run_dir.mkdir()
    result, side = run_dir / "result.json", run_dir / "stamps.jsonl"
    config = (
        f"bare-result-file='{result}' bare-stamps-file='{side}' bare-wait-for-nodes={nodes} bare-poll={poll}"
    )
    argv = [str(BIN / "flwr"), "run", str(BARE_APP), "coop", "--run-config", config]
    env = {**ENV, "FLWR_HOME": str(home)}
    stamps = run_once(
        engine, argv, env, done=result, written=result, side=side, trees=trees, log=run_dir / "log"
    )
    got = json.loads(result.read_text())
    ok = got.get("replies") == nodes and got.get("num-examples") == nodes
    return Outcome(engine, index, stamps, ok, f"{got.get('replies')}/{nodes} replies")


def ours_run(
    index: int, folder: Path, s: Setup, federation: Any, truth: Central, trees: dict[str, int]
) -> Outcome:
    run_dir = folder / f"ours-{index}"
    shared = run_dir / "shared"
    shared.mkdir(parents=True)
    out = run_dir / "report.json"
    argv = request_argv(s, out, f"bench: one round, run {index}")
    argv += ["--superlink", federation.address, "--root-certificates", str(federation.ca)]
    argv += ["--shared-dir", str(shared)]
    written = shared / "answers.json"  # the ServerApp's (removed by the requester once read)
    stamps = run_once(
        "ours", argv, ENV, done=out, written=written, side=shared, trees=trees, log=run_dir / "log"
    )
    ok, text = check_report(out, truth, len(s.ids))
    return Outcome("ours", index, stamps, ok, text)


# --- report ---------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"  # NaN: not observed


def phase_table(runs: dict[str, list[Outcome]]) -> tuple[str, dict[str, tuple[float, float]]]:
    """Median seconds per phase (and span) of each engine; the (bare, ours) medians by key."""
    medians: dict[str, tuple[float, float]] = {}
    rows = []
    (pushed, *_, pushed_what), (total, *_, total_what) = SPANS
    entries = [*PHASES[:5], (pushed, pushed_what), *PHASES[5:7], (total, total_what), PHASES[7]]
    for key, what in entries:
        by = {
            e: _median([o.stamps.phases()[key] for o in got if key in o.stamps.phases()])
            for e, got in runs.items()
        }
        medians[key] = (by["bare"], by["ours"])
        rows.append([what, *(_fmt(v) for v in by.values()), _fmt(by["ours"] - by["bare"])])
    by = {e: _median([o.stamps.total for o in got]) for e, got in runs.items()}
    rows.append(["**end to end**", *(_fmt(v) for v in by.values()), _fmt(by["ours"] - by["bare"])])
    headers = ["phase (median s; – = not observed)", *runs, "ours − bare"]
    return markdown_table(headers, rows), medians


def largest_gaps(medians: dict[str, tuple[float, float]], count: int = 3) -> str:
    """The phases where ours spends most beyond bare, from the finest phases both engines show."""
    labels = {**dict(PHASES), **{key: what for key, _, _, what in SPANS}}
    finest = [key for key, _ in PHASES if all(v == v for v in medians[key])]
    if "to_main" not in finest and "to_pushed" in medians:
        finest.append("to_pushed")
    if not {"round", "after_round"} <= set(finest):
        finest = [k for k in finest if k not in ("to_main", "to_push", "round", "after_round", "to_pushed")]
        finest.append("serverapp_total")
    gaps = sorted(((medians[k][1] - medians[k][0], k) for k in finest if k in medians), reverse=True)
    return "; ".join(f"{labels[k].split(' (')[0]} {d:+.2f} s" for d, k in gaps[:count])


def clientapp_line(outcomes: list[Outcome]) -> str:
    spans = []
    for o in outcomes:
        if o.stamps.clientapps:
            first = min(a for a, _ in o.stamps.clientapps) - o.stamps.start
            last = max(b for _, b in o.stamps.clientapps) - o.stamps.start
            spans.append(f"{len(o.stamps.clientapps)} started {first:.1f}, last seen {last:.1f}")
    return "; ".join(spans) or "none seen"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--records", type=int, default=500, help="records per node")
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each, alternating")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each first")
    parser.add_argument(
        "--bare-poll",
        type=float,
        default=0.5,
        help="also run the bare app pulling replies every N s, as our ServerApp does (0: do not)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the generated data under /tmp")
    parser.add_argument("--note", default="", help="one line recorded with the results")
    args = parser.parse_args(argv)

    began = time.monotonic()
    code = code_version()
    load_before = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="coop-bench-round-", dir="/tmp"))
    base.chmod(0o755)  # the SuperNodes' user must reach their folders; the data directories get hidden
    print(f"seed {SEED}; data under {base}", flush=True)
    served: list[Served] = []
    federation = None
    try:
        s = setup(base, args.nodes, args.records, served)
        truth = central(s.roots, s.artifact)
        side = node_side(s)

        sys.path.insert(0, str(ROOT / "deploy"))
        from flower_federation import FlowerFederation

        isolation = "namespace" if os.geteuid() == 0 and shutil.which("unshare") else "none"
        federation = FlowerFederation(
            base / "flower", [(n.url, n.token_file) for n in s.served], hide=s.roots, isolation=isolation
        )
        t0 = time.monotonic()
        federation.start()
        logs = [federation.workdir / f"supernode-{i}" / "supernode.log" for i in range(args.nodes)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(p.exists() and "SuperNode ID" in p.read_text(errors="replace") for p in logs):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(
                "the SuperNodes did not connect in 60 s:\n" + "\n".join(tail(p, 5) for p in logs)
            )
        connect_s = time.monotonic() - t0
        print(
            f"FlowerFederation ({isolation} isolation): {args.nodes} SuperNodes connected in {connect_s:.1f} s",
            flush=True,
        )
        trees = {"superlink": federation.processes[0].pid}
        trees |= {f"supernode-{i}": p.pid for i, p in enumerate(federation.processes[1:])}
        time.sleep(2.0)

        runs = base / "runs"
        runs.mkdir()
        engines = ["bare", *(["bare-poll"] if args.bare_poll > 0 else []), "ours"]
        measured: dict[str, list[Outcome]] = {e: [] for e in engines}
        warm: list[Outcome] = []
        for i in range(args.warmup + args.runs):
            for engine in engines:
                if engine == "ours":
                    outcome = ours_run(i, runs, s, federation, truth, trees)
                else:
                    poll = args.bare_poll if engine == "bare-poll" else 0.0
                    outcome = bare_run(i, runs, federation.home, args.nodes, trees, poll)
                label = "warm-up" if i < args.warmup else f"run {i - args.warmup + 1}"
                print(
                    f"  {label} {engine}: {outcome.stamps.total:.2f} s; phases "
                    + ", ".join(f"{k} {v:.2f}" for k, v in outcome.stamps.phases().items())
                    + f"; {'OK' if outcome.ok else 'FAILED'}: {outcome.text}",
                    flush=True,
                )
                if outcome.stamps.progress:
                    print(f"    events: {outcome.stamps.progress}", flush=True)
                (warm if i < args.warmup else measured[engine]).append(outcome)
                time.sleep(1.0)

        ours = measured["ours"]
        medians_total = {e: _median([o.stamps.total for o in got]) for e, got in measured.items()}
        ratio = medians_total["ours"] / medians_total["bare"]
        others = [e for e in engines if e != "ours"]
        run_rows = [
            [
                str(k + 1),
                *(f"{measured[e][k].stamps.total:.2f}" for e in engines),
                *(f"{measured['ours'][k].stamps.total / measured[e][k].stamps.total:.2f}" for e in others),
            ]
            for k in range(args.runs)
        ]
        run_rows.append(
            [
                "**median**",
                *(f"**{medians_total[e]:.2f}**" for e in engines),
                *(f"**{medians_total['ours'] / medians_total[e]:.2f}**" for e in others),
            ]
        )
        runs_table = markdown_table(
            ["run", *(f"{e} s" for e in engines), *(f"ours/{e}" for e in others)], run_rows
        )
        phases, medians = phase_table(measured)
        where = largest_gaps(medians)
        checks = [o for o in warm + [o for got in measured.values() for o in got] if not o.ok]
        print()
        print(runs_table)
        print()
        print(phases)
        print(f"\nratio ours/bare (medians): {ratio:.2f} (aim <= 1.2); largest differences: {where}")
        if "bare-poll" in medians_total:
            print(f"ratio ours/bare-poll (medians): {medians_total['ours'] / medians_total['bare-poll']:.2f}")
        for o in checks:
            print(f"check FAILED: {o.engine} run {o.index}: {o.text}")
        elapsed = time.monotonic() - began
        print(f"wall time {elapsed:.0f} s")

        if not args.no_record:
            ours_progress = any(o.stamps.progress for o in ours)
            section = [
                *([f"- note: {args.note}"] if args.note else []),
                f"- command: `{command(__file__)}`",
                f"- machine: {machine()}; flwr {_version('flwr')}",
                f"- code at start: {code}",
                f"- data: {args.nodes} nodes x {args.records:,} chats (seed {SEED}), each its own `coop serve`"
                f" (granian); model: label-agreement, {len(s.artifact):,} B; one FlowerFederation ({isolation}"
                f" isolation, TLS, SuperNode auth; {args.nodes} SuperNodes connected in {connect_s:.1f} s) serves"
                " both apps",
                f"- {args.runs} measured runs of each after {args.warmup} warm-up of each, in turn"
                f" ({', '.join(engines)}); bare = `flwr run bench/bare_flower_app`: one `send_and_receive` of an"
                " evaluate message to every node (it pulls the replies every 3 s), the ClientApp returns a trivial"
                " metric; timed to its result file present"
                + (
                    f"; bare-poll = the same app pushing, then pulling every {args.bare_poll:g} s as our ServerApp"
                    " does"
                    if args.bare_poll > 0
                    else ""
                )
                + "; ours = `coop eval request --superlink` timed to the signed report present at `--out`",
                "- phases: process lifetimes from /proc (sampled every 0.2 s; start times exact to a clock tick),"
                " the bare ServerApp's stamps file"
                + (
                    ", our ServerApp's progress file"
                    if ours_progress
                    else " (ours wrote no progress file: its ServerApp phases are process timing only)"
                ),
                f"- node side alone (each node's local eval interface over HTTP, no Flower): first calls"
                f" {_fmt(_median(side.cold))} s, second {_fmt(_median(side.warm))} s (medians), all"
                f" {args.nodes} at once {side.concurrent:.2f} s",
                f"- load average when the run began: {load_before:.2f}, at its end {os.getloadavg()[0]:.2f}"
                f" (2 cores shared with other work); wall time {elapsed:.0f} s",
                "",
                runs_table,
                "",
                phases,
                "",
                "ClientApp processes (s after the run's start): "
                + "; ".join(f"{e}: {clientapp_line(got)}" for e, got in measured.items())
                + ".",
                "",
                f"**Ratio ours/bare: {ratio:.2f}** (aim ≤ 1.2)"
                + (
                    f"; ours/bare-poll {medians_total['ours'] / medians_total['bare-poll']:.2f}"
                    if "bare-poll" in medians_total
                    else ""
                )
                + f".  Largest differences by phase (ours − bare): {where}.",
            ]
            if checks:
                section += ["", *[f"- check FAILED: {o.engine} run {o.index}: {o.text}" for o in checks]]
            print(
                f"appended to {append_section('One Flower round: bare Flower vs coop eval request', section)}"
            )
        return 0 if not checks else 1
    finally:
        if federation is not None:
            federation.stop()
        for node in served:
            node.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
