"""Browse and search at a million records: p50/p99 and throughput of ``/browse?q=`` and ``/browse/UID``.

The data directory is made as ``bench_release.py`` makes it (its ``populate``:
``coop init``, ``coop member add``, then N accepted public records written
straight into SQLite in bulk, with varied text), then ``coop release`` cuts it
and the node's own ``index_catalog`` puts every released record in the public
catalogue.  That base directory is built by the code of ``--old`` (a tree made
with ``git archive HEAD | tar -x -C /tmp/oldtree``), so the old server can open
it; a copy of it is opened once by this tree's code (its migrations run: the
time is reported), and both are served by ``coop serve`` on 127.0.0.1, one
after the other, in the same run:

- ``old``: the code of ``--old`` (PYTHONPATH), on the base directory;
- ``new``: this tree, on the migrated copy.

Each is loaded with 32 keep-alive clients (a small asyncio GET loader in this
process) for ``--seconds`` per mix: searches (common and rare words, and the
page's filters: licence, label, tag, language, model; and the next page of
results), record pages of random uids, and ``/healthz`` (the server's own
floor: a route doing no query).

    .venv/bin/python bench/bench_browse.py [--records 1000000] [--seconds 20] [--keep]

With ``--keep`` the directories stay under ``--work`` (default
/tmp/coop-bench-browse) and the next run reuses them (the 1M build takes
several minutes; the rest of the run about three).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import msgspec
import tomli_w

HERE: Final = Path(__file__).resolve().parent
COOP: Final = Path(sys.executable).parent / "coop"
HOST: Final = "127.0.0.1"
_MAX_HEAD: Final = 64 * 1024


def _env(tree: Path | None) -> dict[str, str]:
    """The environment a child runs in: ``tree``'s code first on the path (None: this tree)."""
    env = dict(os.environ)
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", HF_HUB_OFFLINE="1")
    paths = ([str(tree / "src")] if tree is not None else []) + [str(HERE)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# --- building the data (run in a child, under the old tree's code) -------------------------


def build(root: Path, records: int, seed: int) -> None:
    """populate + coop release + index_catalog, in this process's ``coop`` (whatever PYTHONPATH says)."""
    from bench_release import cut, populate  # the same data as the release benchmark
    from coop.node.cli.options import open_node

    started = time.monotonic()
    populated = populate(root, records, seed=seed, sample=20)
    print(f"  {records:,} rows in {populated.seconds:.0f} s", flush=True)
    config_path = root / "node.toml"
    config = tomllib.loads(config_path.read_text())
    config["rate_limit"] = {
        "per_ip_per_minute": 100_000_000,
        "per_ip_burst": 1_000_000,
        "per_token_per_minute": 100_000_000,
        "per_token_burst": 1_000_000,
    }
    config["pipeline"]["interval_seconds"] = 3600.0
    config_path.write_text(tomli_w.dumps(config))
    result = cut(root, root.parent, timeout=900.0)
    print(f"  release {result.version} in {result.seconds:.0f} s", flush=True)
    shutil.rmtree(root / "releases" / result.version / "data", ignore_errors=True)
    t0 = time.monotonic()
    with open_node(root) as node:
        total = 0
        while True:
            added = node.index_catalog(max_batches=10, batch=5000)
            total += added
            if not added:
                break
            print(f"  catalogued {total:,} ({time.monotonic() - t0:.0f} s)", flush=True)
    conn = sqlite3.connect(root / "coop.sqlite3")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (root / "BUILT").write_text(f"{records} {seed}\n")
    print(f"  built in {time.monotonic() - started:.0f} s", flush=True)


# --- the load: a small GET loader ---------------------------------------------------------


class Load(msgspec.Struct, frozen=True):
    """What one load run saw."""

    server: str
    mix: str
    connections: int
    answered: int
    ok: int  # 200 responses
    statuses: dict[str, int]
    window_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.answered / self.window_s if self.window_s > 0 else 0.0


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1e3 if ordered else 0.0


async def _client(
    port: int, requests: list[bytes], first: int, deadline: float, out: dict[str, object]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=_MAX_HEAD)
    latencies: list[float] = out["latencies"]  # type: ignore[assignment]
    statuses: Counter[str] = out["statuses"]  # type: ignore[assignment]
    index = first
    try:
        while True:  # at least one request each, then until the deadline
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[head[9:12].decode()] += 1
            out["last"] = time.monotonic()
            if out["last"] >= deadline:
                break
    finally:
        writer.close()


async def _load(
    port: int, requests: list[bytes], connections: int, seconds: float, drain: float
) -> tuple[dict[str, object], float, int]:
    out: dict[str, object] = {"latencies": [], "statuses": Counter(), "last": 0.0}
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_client(port, requests, i * 7919, started + seconds, out))
        for i in range(connections)
    ]
    # Bounded: clients stop sending at the deadline; answers still pending after `drain` are errors.
    done, pending = await asyncio.wait(tasks, timeout=seconds + drain)
    for task in pending:
        task.cancel()
    errors = len(pending) + sum(1 for task in done if task.exception() is not None)
    for task in done:
        if task.exception() is not None:
            print("client error:", repr(task.exception()), flush=True)
            break
    return out, started, errors


def load(
    server: str, mix: str, port: int, paths: list[str], *, connections: int, seconds: float, drain: float
) -> Load:
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/html\r\n\r\n".encode() for p in paths
    ]
    out, started, errors = asyncio.run(_load(port, requests, connections, seconds, drain))
    ordered = sorted(out["latencies"])  # type: ignore[call-overload]
    statuses: Counter[str] = out["statuses"]  # type: ignore[assignment]
    return Load(
        server=server,
        mix=mix,
        connections=connections,
        answered=len(ordered),
        ok=statuses.get("200", 0),
        statuses=dict(statuses),
        window_s=max(float(out["last"]) - started, 1e-9),  # type: ignore[arg-type]
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        max_ms=ordered[-1] * 1e3 if ordered else 0.0,
        errors=errors,
    )


def load_beside(
    server: str, port: int, paths: list[str], *, connections: int, seconds: float, drain: float
) -> Load:
    """``/healthz`` from 4 clients while ``connections`` - 4 clients cycle ``paths``: what a route
    doing no query waits while searches run (a search on the event loop makes everyone wait)."""
    head = f"HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/html\r\n\r\n"
    busy = [f"GET {p} {head}".encode() for p in paths]
    health = [f"GET /healthz {head}".encode()]

    async def both() -> tuple[dict[str, object], float, int]:
        _, (out, started, errors) = await asyncio.gather(
            _load(port, busy, connections - 4, seconds, drain), _load(port, health, 4, seconds, drain)
        )
        return out, started, errors

    out, started, errors = asyncio.run(both())
    ordered = sorted(out["latencies"])  # type: ignore[call-overload]
    statuses: Counter[str] = out["statuses"]  # type: ignore[assignment]
    return Load(
        server=server,
        mix="healthz beside search",
        connections=4,
        answered=len(ordered),
        ok=statuses.get("200", 0),
        statuses=dict(statuses),
        window_s=max(float(out["last"]) - started, 1e-9),  # type: ignore[arg-type]
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        max_ms=ordered[-1] * 1e3 if ordered else 0.0,
        errors=errors,
    )


def probe(port: int, paths: list[str]) -> list[float]:
    """One client, each path once: its latency in ms (what a lone visitor waits)."""
    return [load("-", "-", port, [p], connections=1, seconds=0.0, drain=120.0).p50_ms for p in paths]


# --- the requests ------------------------------------------------------------------------


def searches(uids: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """(kind, path) of the search mix: common, two-word, prefix, absent words, each filter, a next page."""
    common = ["bread", "model", "python", "museum", "query", "holiday", "carefully", "the"]
    cases: list[tuple[str, dict[str, str]]] = [
        ("browse, no words", {}),
        ("one common word", {"q": "bread"}),
        ("two words", {"q": "garden recipe"}),
        ("word", {"q": "tra"}),
        ("prefix", {"q": "tra*"}),
        ("one-letter prefix", {"q": "t*"}),
        ("three one-letter prefixes", {"q": "s* c* p*"}),
        ("absent word", {"q": "zyzzyva"}),
        ("word + licence", {"q": "python", "license": "CC0-1.0"}),
        ("word + label", {"q": "museum", "label": "fail"}),
        ("word + tag", {"q": "oven", "tag": "baking"}),
        ("word + language", {"q": "train", "language": "pt-BR"}),
        ("word + model", {"q": "cache", "model": "mistral-small"}),
        ("no words, language", {"language": "fr"}),
        ("no words, licence + label + absent model", {"license": "CC0-1.0", "label": "fail", "model": "zzz"}),
        (
            "no words, licence + label + model",
            {"license": "CC0-1.0", "label": "fail", "model": "mistral-small"},
        ),
        (
            "rare combination",
            {"q": "yeast", "language": "de", "tag": "travel", "label": "fail", "license": "CC0-1.0"},
        ),
    ]
    out = [(kind, "/browse?" + urlencode(query)) for kind, query in cases]
    for word in common:
        out.append(("one common word", "/browse?" + urlencode({"q": word})))
    for uid in rng.sample(uids, 8):
        out.append(
            ("next page", "/browse?" + urlencode({"q": rng.choice(common), "after": uid, "page": "2"}))
        )
    return out


def catalogued_uids(root: Path, count: int, rng: random.Random) -> list[str]:
    conn = sqlite3.connect(f"file:{root / 'coop.sqlite3'}?mode=ro", uri=True)
    try:
        (top,) = conn.execute("SELECT max(seq) FROM catalog").fetchone()
        picked: list[str] = []
        for _ in range(count * 3):
            row = conn.execute(
                "SELECT uid FROM catalog WHERE seq >= ? LIMIT 1", (rng.randint(1, top),)
            ).fetchone()
            if row:
                picked.append(row[0])
            if len(picked) >= count:
                break
        return picked
    finally:
        conn.close()


# --- the run ---------------------------------------------------------------------------------


def serve_cmd(root: Path, port: int) -> list[str]:
    return [str(COOP), "serve", str(root), "--host", HOST, "--port", str(port)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="(internal) build a base data directory")
    b.add_argument("root", type=Path)
    b.add_argument("--records", type=int, required=True)
    b.add_argument("--seed", type=int, required=True)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--seconds", type=float, default=15.0, help="load per mix and server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--work", type=Path, default=Path("/tmp/coop-bench-browse"))
    parser.add_argument(
        "--old", type=Path, default=Path("/tmp/oldtree"), help="the old code (git archive HEAD)"
    )
    parser.add_argument("--new", type=Path, default=None, help="a tree to run as new (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories for the next run")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.root, args.records, args.seed)
        return 0
    if not (args.old / "src" / "coop").is_dir():
        raise SystemExit(f"no old tree at {args.old}: git archive HEAD | tar -x -C {args.old}")
    from bench_ingest import free_port, running
    from results import append_section, code_version, command, machine, markdown_table

    began = time.monotonic()
    code = code_version()
    stamp = f"{args.records} {args.seed}\n"
    base, new = args.work / "base", args.work / "new"
    args.work.mkdir(parents=True, exist_ok=True)
    built_now = False
    if not (base / "BUILT").exists() or (base / "BUILT").read_text() != stamp:
        shutil.rmtree(base, ignore_errors=True)
        print(f"building {args.records:,} released, catalogued records with the old code ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "build",
                str(base),
                "--records",
                str(args.records),
                "--seed",
                str(args.seed),
            ],
            env=_env(args.old),
            check=True,
        )
        built_now = True
    migrate_s = None
    if built_now or not (new / "BUILT").exists():
        shutil.rmtree(new, ignore_errors=True)
        shutil.copytree(base, new)
        (new / "BUILT").unlink()
        t0 = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from coop.node.cli.options import open_node\n"
                "with open_node(__import__('pathlib').Path(sys.argv[1])): pass",
                str(new),
            ],
            env=_env(args.new),
            check=True,
        )
        migrate_s = time.monotonic() - t0
        (new / "BUILT").write_text(stamp)
        print(f"the copy opened by the new code (its migrations) in {migrate_s:.1f} s", flush=True)

    rng = random.Random(args.seed)
    print(f"seed {args.seed}", flush=True)
    uids = catalogued_uids(base, 2000, rng)
    search_cases = searches(uids, rng)
    mixes = {
        "search": [p for _, p in search_cases],
        "record": [f"/browse/{u}" for u in uids],
        "healthz": ["/healthz"],
    }
    loads: list[Load] = []
    probes: dict[str, list[float]] = {}
    for name, tree, root in (("old", args.old, base), ("new", args.new, new)):
        port = free_port()
        with running(
            serve_cmd(root, port), port=port, log_path=args.work / f"serve-{name}.log", env=_env(tree)
        ):
            probe(port, mixes["search"][:2])  # warm the page cache a little, unmeasured
            probes[name] = probe(port, [search_cases[1][1], search_cases[5][1], mixes["record"][0]])
            print(f"{name}: lone requests (ms): " + ", ".join(f"{v:.0f}" for v in probes[name]), flush=True)
            for mix, paths in mixes.items():
                result = load(
                    name, mix, port, paths, connections=args.connections, seconds=args.seconds, drain=30.0
                )
                loads.append(result)
                print(
                    f"{name:>4} {mix:>8}: {result.rate:7.1f}/s  p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms"
                    f"  statuses {result.statuses}  errors {result.errors}",
                    flush=True,
                )
            beside = load_beside(
                name, port, mixes["search"], connections=args.connections, seconds=args.seconds, drain=30.0
            )
            loads.append(beside)
            print(
                f"{name:>4} healthz beside search: p50 {beside.p50_ms:7.1f} ms  p99 {beside.p99_ms:7.1f} ms"
                f"  max {beside.max_ms:7.1f} ms  errors {beside.errors}",
                flush=True,
            )
    elapsed = time.monotonic() - began

    by = {(r.server, r.mix): r for r in loads}
    rows = []
    measured = [*mixes, "healthz beside search"]
    for mix in measured:
        old, cur = by[("old", mix)], by[("new", mix)]
        for r in (old, cur):
            rows.append(
                [
                    r.server,
                    mix,
                    f"{r.rate:,.1f}",
                    f"{r.p50_ms:,.1f}",
                    f"{r.p99_ms:,.1f}",
                    f"{r.max_ms:,.0f}",
                    str(r.ok),
                    str(r.answered - r.ok),
                    str(r.errors),
                ]
            )
    ratios = []
    for mix in measured:
        old, cur = by[("old", mix)], by[("new", mix)]
        if not old.answered or not cur.answered:  # a server that answered nothing: no ratio
            ratios.append(f"- {mix}: old answered {old.answered}, new {cur.answered} (no ratio)")
            continue
        ratios.append(
            f"- {mix}: throughput new/old {cur.rate / max(old.rate, 1e-9):,.1f}x, "
            f"p99 old/new {old.p99_ms / max(cur.p99_ms, 1e-9):,.1f}x"
        )
    probed = [search_cases[1], search_cases[5], ("record page", mixes["record"][0])]
    probe_rows = [
        [kind, path, f"{probes['old'][i]:,.1f}", f"{probes['new'][i]:,.1f}"]
        for i, (kind, path) in enumerate(probed)
    ]
    lines = [
        f"Command: `{command(__file__)}`",
        "",
        f"Machine: {machine()}; code {code}; load average before {os.getloadavg()[0]:.1f} (shared machine: compare"
        " only the two servers of this run)",
        "",
        f"{args.records:,} accepted, released public records (bench_release.populate, seed {args.seed}), catalogued"
        " by the old code's index_catalog; `old` = the code of `git archive HEAD` (PYTHONPATH) on that directory,"
        " `new` = this tree on a copy opened once by it"
        + (
            f" (its migrations took {migrate_s:.1f} s)"
            if migrate_s is not None
            else " (cached from an earlier run)"
        )
        + f". `coop serve` on 127.0.0.1, {args.connections} keep-alive clients (asyncio loader in the bench's"
        f" process), {args.seconds:.0f} s per mix. search = {len(mixes['search'])} URLs cycled (common, two-word,"
        " whole-word, 3-letter and 1-letter prefix (`t*`, `s* c* p*`) and absent words; each filter with a word;"
        " licence + label + model with no words (an absent and a present model); a rare 5-filter combination; a next page);"
        " record = 2,000 random uids; healthz = the server's floor (no query); healthz beside search ="
        f" 4 clients on /healthz while {args.connections - 4} cycle the search URLs (what a request doing no"
        " query waits while searches run).",
        "",
        markdown_table(
            ["server", "mix", "req/s", "p50 ms", "p99 ms", "max ms", "200s", "other", "errors"], rows
        ),
        "",
        *ratios,
        "",
        "Lone requests (one client, one request each, ms):",
        "",
        markdown_table(["case", "path", "old ms", "new ms"], probe_rows),
        "",
        f"Run time {elapsed:.0f} s.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        append_section("Browse and search at 1M records (bench_browse.py)", lines)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
