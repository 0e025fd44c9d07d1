"""Withdrawal at scale: revising the served releases of a node with many released records.

A data directory is built with ``bench_release``'s bulk builder (``populate``: ``coop
init``, ``coop member add``, N accepted public records written straight into SQLite),
and released in R cuts of N/R records each (``coop release DIR`` as its own process,
R times; a node's releases are cumulative, so the last holds all N and the R together
hold N(R+1)/2 rows).  The rows a cut must not admit yet are held back with
``admitted_in = -1`` (the cut's candidates are ``admitted_in IS NULL``), released one
slice at a time.

Then, on a copy of that directory for each case (release files hard-linked, the
database copied), k records are withdrawn through the node's own path (what ``DELETE
/api/v1/contributions/{uid}`` runs: ``rights.withdraw_contribution`` in one write
transaction each) and the releases revised as the node does it (``Node.revise_releases``,
timed in process).  Cases: k = 1, 10, 100, the records picked *spread* over the R releases
(record j first released in release j mod R) or *clustered* (all first released in the
middle release).  Measured: wall and CPU time of the revision, bytes and files rewritten
(files under ``releases/`` whose inode is new: unchanged files are hard-linked into the
new revision), per withdrawal.  The baseline is "one at a time": k withdrawals each
revised alone (``--sequential`` sizes of k; the others not run).

After each revision, no withdrawn uid nor the hash of its text (``content_sha256``) may
remain in any release file (``grep -F`` over every file, the signed revision statements
aside, which name the uids removed; and the ``uid`` column of every Parquet file): the
benchmark fails loudly otherwise.

    .venv/bin/python bench/bench_withdrawal.py [--records 200000] [--releases 20] [--small 50000]
        [--ks 1,10,100] [--sequential 10] [--keep] [--reuse DIR]

Generated data lives under /tmp and is deleted at the end unless ``--keep`` (``--reuse``
takes a directory a ``--keep`` run left, and skips building what it holds).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
import pyarrow.parquet as pq

from bench_release import cut, populate
from coop.node.contributions import rights
from coop.node.members.accounts import Member, Role
from coop.node.runtime import Node
from results import append_section, code_version, command, machine, markdown_table

_ALLOWED: Final = "revisions"  # a revision's signed statement names the records it removed


class Built(msgspec.Struct, frozen=True):
    records: int
    releases: int
    rows_in_releases: int
    release_bytes: int
    seconds: float


class Case(msgspec.Struct, frozen=True):
    records: int
    k: int
    placement: str
    mode: str  # "grouped" or "one at a time"
    seconds: float
    cpu_seconds: float
    bytes_rewritten: int
    files_rewritten: int
    releases_revised: int
    revisions: int


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(root: Path, records: int, releases: int, *, seed: int, sample: int, logs: Path) -> Built:
    """N accepted public records, then R cuts of N/R each (``coop release`` processes)."""
    started = time.monotonic()
    print(f"generating {records:,} accepted public records ...", flush=True)
    populate(root, records, seed=seed, sample=sample)
    db = root / "coop.sqlite3"
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("UPDATE contributions SET admitted_in = -1")  # held back: no cut admits them
    bounds = [round(records * i / releases) for i in range(releases + 1)]
    rows = 0
    for i in range(releases):
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute(
                "UPDATE contributions SET admitted_in = NULL WHERE seq > ? AND seq <= ?",
                (bounds[i], bounds[i + 1]),
            )
        finally:
            conn.close()
        result = cut(root, logs, timeout=900.0)
        rows += bounds[i + 1]
        print(f"  {result.version}: {bounds[i + 1]:,} records, {result.seconds:.1f} s", flush=True)
    with sqlite3.connect(db) as conn:
        (left,) = conn.execute("SELECT count(*) FROM contributions WHERE state != 'released'").fetchone()
    if left:
        raise SystemExit(f"{left} records were not released")
    return Built(
        records=records,
        releases=releases,
        rows_in_releases=rows,
        release_bytes=_tree_bytes(root / "releases"),
        seconds=time.monotonic() - started,
    )


def copy_node(pristine: Path, target: Path) -> None:
    """The data directory again: release files hard-linked (a revision never modifies one, it
    links the unchanged ones into the new revision), everything else copied."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for child in pristine.iterdir():
        mode = "-al" if child.name == "releases" else "-a"
        subprocess.run(["cp", mode, str(child), str(target / child.name)], check=True)


def inodes(releases: Path) -> set[tuple[int, int]]:
    """(inode, mtime) of every file: a file written anew has a new pair even if its inode is reused."""
    return {(s.st_ino, s.st_mtime_ns) for p in releases.rglob("*") if p.is_file() for s in (p.stat(),)}


def new_files(releases: Path, before: set[tuple[int, int]]) -> tuple[int, int]:
    """(bytes, files) under ``releases`` that are not one of the files of ``before``."""
    size = count = 0
    for path in releases.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if (stat.st_ino, stat.st_mtime_ns) not in before:
                size += stat.st_size
                count += 1
    return size, count


def pick(conn: sqlite3.Connection, k: int, placement: str, releases: int, rng: random.Random) -> list[str]:
    """k released uids: spread over the releases that first released them, or all from the middle one."""
    chosen: list[str] = []
    for j in range(k):
        version = (j % releases) + 1 if placement == "spread" else releases // 2
        (count,) = conn.execute(
            "SELECT count(*) FROM contributions WHERE state = 'released' AND released_in = ?", (version,)
        ).fetchone()
        while True:
            (uid,) = conn.execute(
                "SELECT uid FROM contributions WHERE state = 'released' AND released_in = ? LIMIT 1 OFFSET ?",
                (version, rng.randrange(count)),
            ).fetchone()
            if uid not in chosen:
                chosen.append(uid)
                break
    return chosen


def text_hashes(conn: sqlite3.Connection, uids: list[str]) -> dict[str, str]:
    """uid -> the content_sha256 its record carries (a stand-in for its text: unique per record)."""
    found: dict[str, str] = {}
    for uid in uids:
        (record,) = conn.execute(
            "SELECT t.record FROM contributions c JOIN contents t USING (seq) WHERE c.uid = ?", (uid,)
        ).fetchone()
        found[uid] = msgspec.json.decode(record)["provenance"]["checks"]["content_sha256"]
    return found


def check_gone(releases: Path, needles: dict[str, str], work: Path) -> None:
    """Fail loudly if a withdrawn uid or its text's hash is left in any release file."""
    patterns = work / "needles.txt"
    patterns.write_text("".join(f"{u}\n{h}\n" for u, h in needles.items()), encoding="ascii")
    found = subprocess.run(
        ["grep", "-rlaF", "-f", str(patterns), str(releases)], capture_output=True, text=True
    )
    if found.returncode not in (0, 1):
        raise SystemExit(f"grep failed: {found.stderr}")
    left = [
        line
        for line in found.stdout.splitlines()
        if line and _ALLOWED not in Path(line).relative_to(releases).parts
    ]
    if left:
        raise SystemExit(f"WITHDRAWN RECORD LEFT in {len(left)} release files, e.g. {left[:3]}")
    uids = set(needles)
    for path in releases.rglob("*.parquet"):
        column = pq.read_table(path, columns=["uid"]).column("uid").to_pylist()
        if uids.intersection(column):
            raise SystemExit(f"WITHDRAWN RECORD LEFT in {path}")


def open_node(root: Path) -> tuple[Node, Member]:
    node = Node(root)
    row = node.store.read(
        lambda c: c.execute(
            "SELECT id, name, role, provider, contributor_hash FROM members WHERE name = 'bench'"
        ).fetchone()
    )
    return node, Member(id=row[0], name=row[1], role=Role(row[2]), provider=row[3], contributor_hash=row[4])


def withdraw(node: Node, member: Member, uid: str) -> None:
    """As ``DELETE /api/v1/contributions/{uid}`` does it: one write transaction."""
    now = node.now()
    node.store.write(lambda c: rights.withdraw_contribution(c, uid=uid, member=member, now=now))


def run_case(
    pristine: Path, work: Path, built: Built, uids: list[str], placement: str, *, grouped: bool
) -> Case:
    root = work / "case"
    copy_node(pristine, root)
    releases = root / "releases"
    with sqlite3.connect(root / "coop.sqlite3") as conn:
        needles = text_hashes(conn, uids)
    node, member = open_node(root)
    seconds = cpu = 0.0
    revised = revisions = size = count = 0
    try:
        batches = [uids] if grouped else [[uid] for uid in uids]
        for batch in batches:
            for uid in batch:
                withdraw(node, member, uid)
            before = inodes(releases)  # per revision: a later one removes what an earlier one wrote
            wall0, cpu0 = time.perf_counter(), time.process_time()
            report = node.revise_releases(wait=60.0)
            seconds += time.perf_counter() - wall0
            cpu += time.process_time() - cpu0
            written, files = new_files(releases, before)
            size, count = size + written, count + files
            revisions += len(report.revised)
            revised = max(revised, len(report.revised))
            if report.tombstones != len(batch):
                raise SystemExit(f"the revision handled {report.tombstones} tombstones, not {len(batch)}")
            check_gone(releases, {u: needles[u] for u in batch}, work)
        check_gone(releases, needles, work)
    finally:
        node.close()
    shutil.rmtree(root, ignore_errors=True)
    return Case(
        records=built.records,
        k=len(uids),
        placement=placement,
        mode="grouped" if grouped else "one at a time",
        seconds=seconds,
        cpu_seconds=cpu,
        bytes_rewritten=size,
        files_rewritten=count,
        releases_revised=revised,
        revisions=revisions,
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="released records on the big node")
    parser.add_argument("--small", type=int, default=50_000, help="records on the comparison node (0: none)")
    parser.add_argument("--releases", type=int, default=20, help="cuts, each admitting records/releases")
    parser.add_argument("--ks", default="1,10,100", help="withdrawals grouped in one revision")
    parser.add_argument(
        "--sequential", default="10", help="the k also run one at a time (k revisions of 1 each)"
    )
    parser.add_argument("--placements", default="spread,clustered")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--sample", type=int, default=50, help="items checked against process_entry")
    parser.add_argument("--keep", action="store_true", help="keep the generated data directories")
    parser.add_argument("--reuse", type=Path, help="a work dir a --keep run left (its nodes are reused)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    sizes = [n for n in (args.small, args.records) if 0 < n < args.records] + [args.records]
    ks, sequential = _ints(args.ks), set(_ints(args.sequential))
    placements = [p for p in args.placements.split(",") if p]

    began = time.monotonic()
    code = code_version()
    load_before = os.getloadavg()[0]
    work = args.reuse or Path(tempfile.mkdtemp(prefix="coop-bench-withdrawal-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    print(f"seed {args.seed}; sizes {', '.join(f'{n:,}' for n in sizes)}; work dir {work}", flush=True)
    builds: list[Built] = []
    cases: list[Case] = []
    try:
        for size in sizes:
            pristine = work / f"node-{size}-{args.releases}"
            meta = work / f"node-{size}-{args.releases}.json"
            if meta.exists() and pristine.is_dir():
                built = msgspec.json.decode(meta.read_bytes(), type=Built)
                print(f"reusing {pristine}", flush=True)
            else:
                shutil.rmtree(pristine, ignore_errors=True)
                built = build(pristine, size, args.releases, seed=args.seed, sample=args.sample, logs=work)
                meta.write_bytes(msgspec.json.encode(built))
            builds.append(built)
            print(
                f"  {size:,} records in {args.releases} releases: {built.rows_in_releases:,} rows, "
                f"{built.release_bytes / 1e9:.2f} GB of release files (built in {built.seconds:.0f} s)",
                flush=True,
            )
            with sqlite3.connect(pristine / "coop.sqlite3") as conn:
                for placement in placements:
                    rng = random.Random(f"{args.seed}-{size}-{placement}")
                    for k in ks:
                        uids = pick(conn, k, placement, args.releases, rng)
                        modes = [True, False] if k in sequential else [True]
                        for grouped in modes:
                            case = run_case(pristine, work, built, uids, placement, grouped=grouped)
                            cases.append(case)
                            print(
                                f"  k={k} {placement} {case.mode}: {case.seconds:.2f} s "
                                f"({case.seconds / k:.3f} s/withdrawal), {case.bytes_rewritten / 1e6:,.0f} MB "
                                f"in {case.files_rewritten} files, {case.revisions} release revisions; "
                                "no withdrawn uid or text left",
                                flush=True,
                            )
    finally:
        if args.keep:
            print(f"kept {work}")
        elif args.reuse is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - began

    def find(records: int, k: int, placement: str, mode: str) -> Case | None:
        return next(
            (c for c in cases if (c.records, c.k, c.placement, c.mode) == (records, k, placement, mode)), None
        )

    rows: list[list[str]] = []
    verdicts: list[str] = []
    for c in cases:
        if c.mode != "grouped":
            continue
        single = find(c.records, c.k, c.placement, "one at a time")
        # The estimate: k times the mean single revision measured one at a time (else the k=1 one).
        measured = [
            x for x in cases if (x.records, x.placement, x.mode) == (c.records, c.placement, "one at a time")
        ]
        one = max(measured, key=lambda x: x.k, default=None) or find(c.records, 1, c.placement, "grouped")
        if single is not None:
            alone = f"{single.seconds:.1f} s, {single.bytes_rewritten / 1e6:,.0f} MB, {single.files_rewritten} files"
            ratio = f"{single.seconds / c.seconds:.1f}x time, {single.bytes_rewritten / c.bytes_rewritten:.1f}x bytes"
        elif c.k == 1:
            alone, ratio = "(the same)", "1x"
        elif one is not None:  # estimated: k revisions of one each cost k times one revision of one
            each_s, each_b = one.seconds / one.k, one.bytes_rewritten / one.k
            alone = f"est. {c.k * each_s:.0f} s, {c.k * each_b / 1e6:,.0f} MB ({c.k} x mean of k={one.k} {one.mode})"
            ratio = (
                f"est. {c.k * each_s / c.seconds:.1f}x time, {c.k * each_b / c.bytes_rewritten:.1f}x bytes"
            )
        else:
            alone = ratio = "-"
        rows.append(
            [
                f"{c.records:,}",
                str(c.k),
                c.placement,
                f"{c.seconds:.2f} s (cpu {c.cpu_seconds:.1f} s)",
                f"{c.seconds / c.k:.3f} s",
                f"{c.bytes_rewritten / c.k / 1e6:,.1f} MB",
                f"{c.files_rewritten} ({c.releases_revised} releases)",
                alone,
                ratio,
            ]
        )
    table = markdown_table(
        [
            "records",
            "k",
            "placement",
            "grouped revision",
            "time/withdrawal",
            "bytes/withdrawal",
            "files rewritten",
            "one at a time (k revisions)",
            "one at a time / grouped",
        ],
        rows,
    )
    for placement in placements:
        big = [find(args.records, k, placement, "grouped") for k in ks]
        per = [(c.k, c.seconds / c.k) for c in big if c is not None]
        if len(per) > 1:
            verdicts.append(
                f"- {placement}, {args.records:,} records: time per withdrawal "
                + " -> ".join(f"{t:.3f} s (k={k})" for k, t in per)
                + f": falls {per[0][1] / per[-1][1]:.0f}x from k={per[0][0]} to k={per[-1][0]} when grouped"
            )
    if len(builds) > 1:
        for k in ks:
            small, big_case = (
                find(builds[0].records, k, "spread", "grouped"),
                find(args.records, k, "spread", "grouped"),
            )
            if small and big_case:
                verdicts.append(
                    f"- scaling, spread k={k}: {big_case.records:,} vs {small.records:,} records: time "
                    f"{big_case.seconds / small.seconds:.1f}x, bytes {big_case.bytes_rewritten / small.bytes_rewritten:.1f}x"
                )
    summary = [
        "- data: "
        + "; ".join(
            f"{b.records:,} released public records in {b.releases} cumulative releases ({b.rows_in_releases:,} rows,"
            f" {b.release_bytes / 1e9:.2f} GB of release files; built in {b.seconds:.0f} s)"
            for b in builds
        ),
        "- withdrawal: `rights.withdraw_contribution` in one write transaction each (what DELETE "
        "/api/v1/contributions/{uid} runs); revision: `Node.revise_releases` in process (wall and CPU of that call; "
        "the catalogue is not indexed here, so its FTS optimize is ~free; on a node with an indexed catalogue it "
        "adds a fixed cost per revision)",
        "- bytes/files rewritten: files under releases/ with a new inode after the revisions (unchanged "
        "files are hard-linked into the new revision); clustered = all k first released in the middle release, "
        "spread = record j first released in release (j mod R)+1 (the k=1 record in the first: every release holds it)",
        "- checked after every revision: no withdrawn uid nor its content_sha256 in any release file "
        "(grep -F, revision statements aside) nor in any Parquet uid column: OK",
        f"- load average when the run began: {load_before:.2f}; wall time of the whole run: {elapsed:.0f} s",
    ]
    print()
    print(table)
    print("\n".join(summary + verdicts))
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            *summary,
            "",
            table,
            "",
            "Verdict:",
            *verdicts,
        ]
        print(f"\nappended to {append_section('Withdrawal at scale', section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
