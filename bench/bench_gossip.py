"""Gossip at scale: rounds to convergence, bytes per exchange, manifest verification.

Everything runs in process on :mod:`coop.federation.simulation` (the real
``Book`` state machine and the real protocol messages over an in-memory
network), so the figures are CPU-bound and deterministic per seed.

1. **Rounds to convergence.**  N nodes, fanout 3.  The federation starts
   converged: ``--background`` origins have each published a manifest with two
   records, and every node holds those manifests and mirrors those records
   (delivered directly through ``Book.receive`` / ``Book.receive_records``, and
   checked with ``Federation.converged``).  Then node 0 adds three records and
   publishes its next manifest; we count rounds until every node holds it
   (``records=False``), and in a separate run until every node mirrors its
   records too.  Losses: none; 30 % *message* loss (the simulator's model:
   every request and every answer is dropped independently); 30 % *exchange*
   loss (a whole exchange fails at its first message, as when a peer is down).
   Beside it, the synchronous push-pull estimate log3 N + ln ln N and a
   Monte Carlo of the abstract synchronous model (informed at the start of a
   round = can pass it on in that round).
2. **Bytes per exchange.**  One exchange between two converged nodes, then
   one after the origin published d new records (d = 1, 10, 100), pulled by
   a converged peer from the origin, split by protocol step and compared with
   the new data (the records' bytes and their manifest entries).
3. **Manifest verification.**  A 100k-entry manifest: ``check_manifest``
   alone, then ``Book.receive`` into a fresh store; the next one-entry
   manifest on top of it; ``Book.record_wants`` with everything mirrored;
   Ed25519 verifications per second and tiny-manifest checks per second.

4. **A roster and sparse talk at 1,000 and 10,000 nodes.**  Every node trusts the roster's
   members (one mapping shared by every book) and syncs only with ``fanout`` of its own peers: its
   ring neighbours and 2 random others.  A random node publishes; rounds until every node holds
   its manifest and until every node mirrors its records (one run), with no loss and with 30 %
   message loss, the protocol as it is (``protocol.py``, retries within the exchange if it has
   them) beside the old behaviour (a lost message ends the exchange: ``sticky_loss``, whole
   digests).  Each run in a child process, so its RSS per node is its own; beside it the RSS of
   a real idle ``coop serve``.

Message-loss rows of part 1 also run the old behaviour beside the current one, and part 2 the
old whole-digest exchange beside the current one, in the same run.

    .venv/bin/python bench/bench_gossip.py [--seeds 20] [--sizes 10,100,1000] [--big-budget 180]
        [--sparse-sizes 1000,10000] [--sparse-budget 120] [--budget 360]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import httpx
import msgspec
from nacl.signing import SigningKey, VerifyKey

from coop.federation.errors import PeerUnreachableError
from coop.federation.gossip import Accepted, Book, MemoryBookStore
from coop.federation.manifest import (
    GENESIS,
    Entry,
    GovernanceState,
    build_manifest,
    check_manifest,
    entry_bytes,
    seal_manifest,
)
from coop.federation.protocol import PATHS, SummaryMessage, SyncReport, sync_with
from coop.federation.simulation import Federation, SimNode, record_for
from coop.federation.transport import Request, Response
from coop.governance import (
    Embargo,
    EvalConsent,
    License,
    Scope,
    public_key,
    sha256_hex,
)
from coop.governance.signing import Signer
from coop.node.ids import uuid7
from results import append_section, code_version, command, machine, markdown_table

FANOUT: Final = 3
LOSS: Final = 0.3
ROUND_LIMIT: Final = 80
NEW_RECORDS: Final = 3  # records in the manifest whose spread is measured
BACKGROUND_RECORDS: Final = 2
AIM_P99: Final = {10: 4, 100: 6, 1000: 9}
AIM_EXTRA_AT_LOSS: Final = 2
AIM_SUMMARY_BYTES: Final = 128
AIM_RATIO: Final = 1.2
TYPICAL_RECORD: Final = 2_200  # mean canonical record size in the release benchmark (2,219 B)
THEORY_SEEDS: Final = 100
STATE: Final = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)
_VOCABULARY: Final = (
    "model answer question context token prompt dataset license member release bucket training "
    "evaluation summary paragraph sentence example function variable python error request response "
    "server client latency cache memory disk network database table column index query schema"
)
WORDS: Final = tuple(_VOCABULARY.split())


# --- simulated federations ------------------------------------------------------------


# The protocol's own switch for the old whole-digest exchange, when it has one.
OLD_DIGEST: Final = (
    {"by_difference": False} if "by_difference" in inspect.signature(sync_with).parameters else {}
)


def use_old_protocol(fed: Federation) -> None:
    """The behaviour before retries and reconciliation: a lost message ends the exchange
    (``sticky_loss``: the protocol's retries get nowhere), whole digests both ways."""
    fed.sticky_loss = True
    fed.sync_options = dict(OLD_DIGEST)


class LossyFederation(Federation):
    """The simulator, plus loss of whole exchanges: the first message fails, the exchange ends."""

    exchange_loss = 0.0

    def send(self, caller: SimNode, request: Request, *, timeout: float, max_bytes: int) -> Response:
        if (
            self.exchange_loss
            and request.url.endswith(PATHS["summary"])
            and self.rng.random() < self.exchange_loss
        ):
            raise PeerUnreachableError(f"{request.url} unreachable (exchange lost)")
        return super().send(caller, request, timeout=timeout, max_bytes=max_bytes)


def converged_federation(
    n: int,
    seed: int,
    *,
    background: int,
    records: int = BACKGROUND_RECORDS,
    holders: int | None = None,
    roster: bool = False,
    sparse: int | None = None,
) -> Federation:
    """N nodes, the first ``background`` of which published a manifest every node (or the first
    ``holders``) holds and mirrors, delivered directly through ``Book.receive``."""
    fed = LossyFederation(n, seed=seed, fanout=FANOUT, roster=roster, sparse=sparse)
    envelopes = []
    data: dict[str, bytes] = {}
    for node in fed.nodes[:background]:
        for _ in range(records):
            node.add_record(fed.rng)
        envelopes.append(node.publish(fed.now))
        data.update({entry.hash: record for entry, record in node.own.values()})
    group = fed.nodes if holders is None else fed.nodes[:holders]
    for node in group:
        node.book.receive(envelopes, now=fed.now)
        wanted = node.book.record_wants(limit=len(data) + 1)
        node.book.receive_records(wanted, {entry.hash: data[entry.hash] for _, entry in wanted})
    if not fed.converged(group, records=True):
        raise RuntimeError(f"setup did not converge (n={n}, seed={seed})")
    return fed


class Condition(msgspec.Struct, frozen=True):
    name: str
    records: bool  # rounds until records are mirrored too (else: until the manifest is held)
    message_loss: float = 0.0
    exchange_loss: float = 0.0
    old: bool = False  # the old behaviour (no retry, whole digests): the baseline


CONDITIONS: Final = (
    Condition("manifest, no loss", records=False),
    Condition("manifest, 30% message loss", records=False, message_loss=LOSS),
    Condition("manifest, 30% message loss, OLD", records=False, message_loss=LOSS, old=True),
    Condition("manifest, 30% exchange loss", records=False, exchange_loss=LOSS),
    Condition("records, no loss", records=True),
    Condition("records, 30% message loss", records=True, message_loss=LOSS),
    Condition("records, 30% message loss, OLD", records=True, message_loss=LOSS, old=True),
    Condition("records, 30% exchange loss", records=True, exchange_loss=LOSS),
)
# Over 100 nodes the lossy record runs are left out, to fit more seeds of the others in the budget.
BIG_CONDITIONS: Final = (*CONDITIONS[:4], CONDITIONS[4])


def rounds_to_spread(n: int, seed: int, condition: Condition, *, background: int) -> int | None:
    """Rounds from node 0's new manifest until every node holds it (and mirrors its records)."""
    fed = converged_federation(n, seed, background=background)
    assert isinstance(fed, LossyFederation)
    origin = fed.nodes[0]
    for _ in range(NEW_RECORDS):
        origin.add_record(fed.rng)
    origin.publish(fed.now)
    fed.loss, fed.exchange_loss = condition.message_loss, condition.exchange_loss
    if condition.old:
        use_old_protocol(fed)
    start = fed.round
    end = fed.rounds_until_converged(limit=ROUND_LIMIT, records=condition.records)
    if end is None:
        return None
    heads = {node.store.heads()[origin.id].seq for node in fed.nodes}
    if heads != {origin.seq}:
        raise RuntimeError(f"converged without the new manifest everywhere: {heads}")
    return end - start


def p99(values: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (the maximum for fewer than 100 values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def theory(n: int) -> float:
    return math.log(n, FANOUT) + math.log(math.log(n))


def synchronous_model(n: int, seed: int, *, success: float = 1.0) -> int:
    """Abstract synchronous push-pull: only nodes informed when a round starts pass it on."""
    rng = random.Random(seed)
    informed = [False] * n
    informed[0] = True
    count, rounds = 1, 0
    while count < n:
        rounds += 1
        before = informed[:]
        for i in range(n):
            for j in rng.sample(range(n - 1), FANOUT):
                j += j >= i  # any node but i
                if (before[i] or before[j]) and rng.random() < success:
                    informed[i] = informed[j] = True
        count = sum(informed)
    return rounds


class SpreadRow(msgspec.Struct):
    n: int
    condition: Condition
    rounds: list[int | None]
    seeds: list[int]


def bench_spread(sizes: Sequence[int], seeds: int, big_budget: float, background: int) -> list[SpreadRow]:
    rows: list[SpreadRow] = []
    for n in sizes:
        conditions = CONDITIONS if n <= 100 else BIG_CONDITIONS
        by_condition = {c.name: SpreadRow(n, c, [], []) for c in conditions}
        started = time.monotonic()
        for seed in range(seeds):
            for condition in conditions:
                t0 = time.monotonic()
                result = rounds_to_spread(n, seed, condition, background=min(background, n))
                row = by_condition[condition.name]
                row.rounds.append(result)
                row.seeds.append(seed)
                print(
                    f"  N={n} seed {seed:2d} {condition.name:28s} "
                    f"{'>' + str(ROUND_LIMIT) if result is None else result:>4} rounds "
                    f"({time.monotonic() - t0:.1f} s)",
                    flush=True,
                )
            # Big federations: as many seeds as fit in the budget (every condition per seed).
            spent = time.monotonic() - started
            if n > 100 and seed >= 1 and spent * (seed + 2) / (seed + 1) > big_budget:
                break
        rows += by_condition.values()
    return rows


def _figure(values: list[int | None]) -> tuple[float, float]:
    finite = [float(ROUND_LIMIT + 1) if v is None else float(v) for v in values]
    return statistics.median(finite), p99(finite)


def spread_table(rows: list[SpreadRow]) -> tuple[str, list[str]]:
    table = []
    verdicts = []
    base: dict[tuple[int, bool], float] = {}
    base_median: dict[tuple[int, bool], float] = {}
    for row in rows:
        median, high = _figure(row.rounds)
        key = (row.n, row.condition.records)
        lossless = row.condition.message_loss == 0 and row.condition.exchange_loss == 0
        if lossless:
            base[key], base_median[key] = high, median
        extra = "" if lossless else f"+{high - base[key]:g} (median +{median - base_median[key]:g})"
        failed = sum(v is None for v in row.rounds)
        table.append(
            [
                f"{row.n:,}",
                row.condition.name,
                str(len(row.rounds)),
                f"{median:g}",
                f"{high:g}" + (f" ({failed} > {ROUND_LIMIT})" if failed else ""),
                f"{max(v for v in row.rounds if v is not None) if failed < len(row.rounds) else '-'}",
                extra,
                f"{theory(row.n):.1f}",
            ]
        )
        aim = AIM_P99.get(row.n)
        if aim is not None and not row.condition.records and not row.condition.old:
            if lossless:
                verdicts.append(
                    f"- N={row.n:,}: manifest p99 {high:g} rounds, aim ≤ {aim}: " + _met(high <= aim)
                )
            else:
                verdicts.append(
                    f"- N={row.n:,}, {row.condition.name}: p99 {high - base[key]:+g} rounds over no loss,"
                    f" aim ≤ +{AIM_EXTRA_AT_LOSS}: " + _met(high - base[key] <= AIM_EXTRA_AT_LOSS)
                )
    headers = [
        "N",
        "what / loss",
        "seeds",
        "median",
        "p99",
        "max",
        "extra vs no loss (p99)",
        "log3 N + ln ln N",
    ]
    return markdown_table(headers, table), verdicts


def theory_table(sizes: Sequence[int]) -> str:
    table = []
    for n in sizes:
        clean = [synchronous_model(n, s) for s in range(THEORY_SEEDS)]
        lossy = [synchronous_model(n, s, success=1 - LOSS) for s in range(THEORY_SEEDS)]
        table.append(
            [
                f"{n:,}",
                f"{theory(n):.1f}",
                f"{statistics.median(clean):g} / {p99(clean):g}",
                f"{statistics.median(lossy):g} / {p99(lossy):g}",
            ]
        )
    headers = ["N", "log3 N + ln ln N", "sync model median / p99", "sync model, 30% exchange loss"]
    return markdown_table(headers, table)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- bytes per exchange ------------------------------------------------------------------


class CountingLink:
    """The simulated network as one caller sees it, counting bytes per protocol step."""

    def __init__(self, fed: Federation, caller: SimNode) -> None:
        self.fed = fed
        self.caller = caller
        self.steps: dict[str, list[int]] = {}

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        response = self.fed.send(self.caller, request, timeout=timeout, max_bytes=max_bytes)
        counts = self.steps.setdefault(request.url.rsplit("/", 1)[-1], [0, 0])
        counts[0] += len(request.body)
        counts[1] += len(response.body)
        return response


def exchange(
    fed: Federation, caller: SimNode, peer: SimNode, *, old: bool = False
) -> tuple[SyncReport, CountingLink]:
    link = CountingLink(fed, caller)
    options = OLD_DIGEST if old else {}
    report = sync_with(
        fed.url(peer), caller.book, link, signer=lambda *_: {}, now=fed.now, records=True, **options
    )
    if report.error:
        raise RuntimeError(f"exchange failed: {report.error}")
    return report, link


def add_typical_record(node: SimNode, rng: random.Random, size: int) -> Entry:
    """A record of about ``size`` canonical bytes with a UUIDv7 uid, as a real node holds."""
    uid = uuid7((1_800_000_000 + len(node.own)) * 1_000_000_000, rng.randbytes(10))
    words: list[str] = []
    length = 520  # uid and the record's other fields around the text
    while length < size:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    licence = rng.choice(list(License))
    entry, data = record_for(
        Entry(
            uid=uid, hash="", license=licence, ai_use="train-ai=y", eval=EvalConsent.YES, scope=Scope.PUBLIC
        ),
        " ".join(words),
    )
    node.own[uid] = (entry, data)
    return entry


class BytesRow(msgspec.Struct):
    origins: int
    kind: str  # "sim" or "typical" records; "idle"
    d: int
    requests: int
    steps: dict[str, list[int]]
    total: int
    new: int
    records: int
    entries: int = 0  # bytes of the new records' manifest entries (part of ``new``)
    protocol: str = "now"  # "now": protocol.py as it is; "old": whole digests (the baseline)


BYTES_RUNS: Final = (("sim", "now"), ("typical", "now"), ("typical", "old"))


def bench_bytes(origin_counts: Sequence[int], ds: Sequence[int]) -> tuple[list[BytesRow], list[BytesRow]]:
    """Under a roster (manifests do not list the federation), only the three nodes of the exchange
    converged beforehand (every origin published; 1,000 origins verified at 1,000 nodes would
    cost minutes)."""
    idle_rows: list[BytesRow] = []
    rows: list[BytesRow] = []
    for origins in origin_counts:
        for kind, protocol in BYTES_RUNS:
            if protocol == "old" and not OLD_DIGEST:
                continue
            old = protocol == "old"
            fed = converged_federation(origins, seed=7, background=origins, holders=3, roster=True)
            origin, peer = fed.nodes[0], fed.nodes[1]
            report, link = exchange(fed, peer, fed.nodes[2], old=old)
            assert report.in_sync
            if kind == "sim":
                idle_rows.append(
                    BytesRow(origins, "idle", 0, report.requests, link.steps, _total(report), 0, 0)
                )
            for d in ds:
                entries = [
                    origin.add_record(fed.rng)
                    if kind == "sim"
                    else add_typical_record(origin, fed.rng, TYPICAL_RECORD)
                    for _ in range(d)
                ]
                origin.publish(fed.now)
                report, link = exchange(fed, peer, origin, old=old)
                if peer.store.heads()[origin.id].seq != origin.seq or report.records != d:
                    raise RuntimeError(f"the peer did not get the manifest and {d} records: {report}")
                listed = sum(len(entry_bytes(e)) for e in entries)
                new = listed + sum(len(origin.own[e.uid][1]) for e in entries)
                rows.append(
                    BytesRow(
                        origins,
                        kind,
                        d,
                        report.requests,
                        link.steps,
                        _total(report),
                        new,
                        report.records,
                        listed,
                        protocol,
                    )
                )
                again, _ = exchange(fed, peer, origin, old=old)
                assert again.in_sync, "the peer is not converged with the origin after the exchange"
    return idle_rows, rows


def _total(report: SyncReport) -> int:
    return report.bytes_sent + report.bytes_received


def _step(row: BytesRow, name: str) -> str:
    sent, received = row.steps.get(name, [0, 0])
    return f"{sent:,} / {received:,}" if sent or received else "-"


def bytes_tables(idle: list[BytesRow], rows: list[BytesRow]) -> tuple[str, str, list[str]]:
    summary_size = len(msgspec.json.encode(SummaryMessage("0" * 64)))
    idle_table = markdown_table(
        ["origins", "requests", "summary sent / received", "exchange total"],
        [[f"{r.origins}", str(r.requests), _step(r, "summary"), f"{r.total:,} B"] for r in idle],
    )
    table = []
    for row in rows:
        table.append(
            [
                f"{row.origins:,}",
                row.kind + (" OLD" if row.protocol == "old" else ""),
                str(row.d),
                f"{row.new / row.d:,.0f}",
                str(row.requests),
                _step(row, "summary"),
                _step(row, "reconcile"),
                _step(row, "digest"),
                _step(row, "manifests"),
                _step(row, "push"),
                _step(row, "records"),
                f"{row.total:,}",
                f"{row.new:,}",
                f"{row.total / row.new:.2f}x",
            ]
        )
    headers = [
        "origins",
        "records",
        "d",
        "new B / record",
        "requests",
        "summary B sent / recv",
        "reconcile",
        "digest",
        "manifests",
        "push",
        "records",
        "total B",
        "new data B",
        "total / new",
    ]
    verdicts = [
        f"- summary message {summary_size} B each way, idle exchange {idle[0].total} B in {idle[0].requests}"
        f" request, at {', '.join(str(r.origins) for r in idle)} origins alike; aim ≤ {AIM_SUMMARY_BYTES} B"
        f" of digest per summary: " + _met(summary_size <= AIM_SUMMARY_BYTES)
    ]
    for (origins, kind, protocol), group in _groups(rows).items():
        first, last = group[0], group[-1]
        slope = (last.total - first.total) / (last.new - first.new)
        fixed = first.total - first.new * slope
        label = "the OLD whole-digest exchange (baseline)" if protocol == "old" else "now"
        verdicts.append(
            f"- {origins:,} origins, {kind} records, {label}: total/new {', '.join(f'{r.total / r.new:.2f}x' for r in group)}"
            f" at d = {', '.join(str(r.d) for r in group)}; marginal {slope:.2f} B on the wire per B of new data,"
            f" fixed ≈ {fixed:,.0f} B per exchange; aim ≤ {AIM_RATIO}x: "
            + ", ".join(f"d={r.d} {_met(r.total / r.new <= AIM_RATIO)}" for r in group)
        )
    verdicts.append(_overhead(rows))
    return idle_table, markdown_table(headers, table), verdicts


def _overhead(rows: list[BytesRow]) -> str:
    """The fixed bytes of a changed exchange (total - new data at d = 1), now vs the old one."""
    parts = []
    for (origins, kind, protocol), group in _groups(rows).items():
        if kind != "typical":
            continue
        one = next(r for r in group if r.d == 1)
        digest = sum(one.steps.get("digest", [0, 0])) + sum(one.steps.get("reconcile", [0, 0]))
        parts.append(
            f"{origins:,} origins {protocol}: {one.total - one.new:,} B (digest/reconcile {digest:,} B)"
        )
    return (
        "- fixed overhead of a changed exchange (total − new data at d = 1, typical records; aim ≤ 2 KB"
        " at 1,000 origins): " + "; ".join(parts)
    )


def _groups(rows: list[BytesRow]) -> dict[tuple[int, str, str], list[BytesRow]]:
    out: dict[tuple[int, str, str], list[BytesRow]] = {}
    for row in rows:
        out.setdefault((row.origins, row.kind, row.protocol), []).append(row)
    return out


# --- manifest verification -----------------------------------------------------------------


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times = []
    result: object = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _rate(fn: Callable[[], object], seconds: float, cap: int = 1_000_000) -> float:
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while count < cap:
        for _ in range(100):
            fn()
        count += 100
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - t0)


def bench_verify(n_entries: int, repeats: int) -> tuple[str, list[str]]:
    rng = random.Random(20261122)
    seed = rng.randbytes(32)
    origin = public_key(seed).hex()
    now = 1_800_000_000
    licences = list(License)
    # Entries naming real record bytes (a store keeps only bytes that are the listed record).
    records = dict(
        record_for(
            Entry(
                uid=uuid7((now - n_entries + i) * 1_000_000_000, rng.randbytes(10)),
                hash="",
                license=licences[i % len(licences)],
                ai_use="train-ai=y",
                eval=EvalConsent.YES,
                scope=Scope.PUBLIC,
            ),
            f"chat {i}",
        )
        for i in range(n_entries)
    )
    entries = list(records)
    complete = {e.uid: e for e in entries}

    def manifest(seq: int, prev: str, added: list[Entry]) -> tuple[bytes, bytes]:
        payload = build_manifest(
            origin=origin,
            key=origin,
            coop="coop-bench",
            seq=seq,
            prev=prev,
            issued_at=now,
            lifetime=30 * 86_400,
            release=f"v{seq}",
            added=added,
            complete=complete,
            tombstones=[],
            state=STATE,
        )
        return payload, seal_manifest(payload, [Signer(seed)])

    t_build, built = _timed(lambda: manifest(1, GENESIS, entries), 1)
    payload, envelope = built  # type: ignore[misc]
    trusted = {origin: origin}
    t_check, _ = _timed(lambda: check_manifest(envelope, trusted=trusted), repeats)

    def receive_fresh() -> Book:
        book = Book("f" * 64, {origin: origin}, MemoryBookStore())
        decisions = book.receive([envelope], now=now + 1)
        assert isinstance(decisions[0], Accepted), decisions
        return book

    t_receive, book = _timed(receive_fresh, repeats)
    assert isinstance(book, Book)
    # The next manifest adds one entry: what every later manifest of a big origin costs.
    extra, extra_data = record_for(
        Entry(
            uid=uuid7((now + 1) * 1_000_000_000, rng.randbytes(10)),
            hash="",
            license=License.CC0,
            ai_use="train-ai=y",
            eval=EvalConsent.YES,
            scope=Scope.PUBLIC,
        ),
        "one more",
    )
    records[extra] = extra_data
    complete[extra.uid] = extra
    _, small = manifest(2, sha256_hex(payload), [extra])
    t_small_check, _ = _timed(lambda: check_manifest(small, trusted=trusted), repeats)
    t0 = time.perf_counter()
    decisions = book.receive([small], now=now + 2)
    t_next = time.perf_counter() - t0
    assert isinstance(decisions[0], Accepted), decisions
    # Every mirrored already: the scan each exchange with records=True does before asking.
    book.store.put_records([(origin, e, records[e]) for e in complete.values()])
    t_wants, wanted = _timed(lambda: book.record_wants(limit=2048), repeats)
    assert wanted == []

    key = SigningKey(rng.randbytes(32))
    message = rng.randbytes(200)
    signed = key.sign(message)
    verify_key = VerifyKey(bytes(key.verify_key))
    verifies = _rate(lambda: verify_key.verify(signed), 2.0)
    tiny_seed = rng.randbytes(32)
    tiny_origin = public_key(tiny_seed).hex()
    tiny_payload = build_manifest(
        origin=tiny_origin,
        key=tiny_origin,
        coop="coop-bench",
        seq=1,
        prev=GENESIS,
        issued_at=now,
        lifetime=86_400,
        release="v1",
        added=entries[:1],
        complete={entries[0].uid: entries[0]},
        tombstones=[],
        state=STATE,
    )
    tiny = seal_manifest(tiny_payload, [Signer(tiny_seed)])
    tiny_trusted = {tiny_origin: tiny_origin}
    checks = _rate(lambda: check_manifest(tiny, trusted=tiny_trusted), 2.0)

    rows = [
        [f"build + seal a {n_entries:,}-entry manifest", f"{t_build:.2f} s", "once"],
        [f"check_manifest, {n_entries:,} entries", f"{t_check:.2f} s", f"median of {repeats}"],
        [
            f"Book.receive into a fresh MemoryBookStore, {n_entries:,} entries",
            f"{t_receive:.2f} s",
            f"median of {repeats}; of which indexing ≈ {t_receive - t_check:.2f} s",
        ],
        [
            "check_manifest, the next 1-entry manifest",
            f"{t_small_check * 1000:.2f} ms",
            f"median of {repeats}",
        ],
        [
            f"Book.receive of that 1-entry manifest on top of {n_entries:,}",
            f"{t_next:.2f} s",
            "once (folds and re-roots the whole set)",
        ],
        [
            f"Book.record_wants, {n_entries + 1:,} entries all mirrored",
            f"{t_wants * 1000:.0f} ms",
            f"median of {repeats}; runs in every exchange with records=True",
        ],
        ["PyNaCl VerifyKey.verify (200 B message)", f"{verifies:,.0f} /s", "2 s loop"],
        ["check_manifest, 1-entry manifest", f"{checks:,.0f} /s", f"2 s loop; envelope {len(tiny):,} B"],
    ]
    sizes = [
        f"- {n_entries:,}-entry manifest: payload {len(payload):,} B ({len(payload) / n_entries:.0f} B/entry),"
        f" envelope {len(envelope):,} B ({len(envelope) / 2**20:.1f} MiB; base64 adds a third);"
        f" 1-entry next manifest {len(small):,} B",
    ]
    return markdown_table(["what", "time / rate", "how"], rows), sizes


# --- a roster and sparse talk at scale ------------------------------------------------------

SPARSE_EXTRA: Final = 2  # random peers beside the two ring neighbours
# Origins already published when the run starts (every node verifies each: the setup's cost).
SPARSE_BACKGROUND: Final = 10
SPARSE_BACKGROUND_BIG: Final = 3  # over 1,000 nodes


class SparseCondition(msgspec.Struct, frozen=True):
    name: str
    loss: float = 0.0
    old: bool = False


SPARSE_CONDITIONS: Final = (
    SparseCondition("no loss"),
    SparseCondition("30% message loss", LOSS),
    SparseCondition("30% message loss, OLD", LOSS, old=True),
)


class SparseRun(msgspec.Struct):
    n: int
    seed: int
    condition: str
    background: int
    manifest_rounds: int | None
    records_rounds: int | None
    seconds: float  # the spread, setup excluded
    setup_seconds: float
    bytes_per_node: float  # every request and answer on the network until converged, / N
    retries: int
    rss_before: int
    rss_setup: int
    rss_end: int
    max_rss: int


def _rss() -> int:
    """This process's resident set now, bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sparse_run(n: int, seed: int, condition: SparseCondition, background: int) -> SparseRun:
    """One run in this process: a roster, ring + 2 random peers each, a random node publishes."""
    rss_before = _rss()
    t0 = time.monotonic()
    fed = converged_federation(n, seed, background=background, roster=True, sparse=SPARSE_EXTRA)
    setup = time.monotonic() - t0
    rss_setup = _rss()
    origin = fed.nodes[fed.rng.randrange(n)]
    for _ in range(NEW_RECORDS):
        origin.add_record(fed.rng)
    origin.publish(fed.now)
    fed.loss = condition.loss
    if condition.old:
        use_old_protocol(fed)
    fed.bytes = 0
    start, manifest_at, records_at, retries = fed.round, None, None, 0
    t0 = time.monotonic()
    for _ in range(ROUND_LIMIT):
        reports = fed.step(records=True)
        retries += sum(getattr(r, "retries", 0) for r in reports)
        if manifest_at is None and all(
            (head := node.store.heads().get(origin.id)) is not None and head.seq == origin.seq
            for node in fed.nodes
        ):
            manifest_at = fed.round - start
        if manifest_at is not None and fed.converged(records=True):
            records_at = fed.round - start
            break
    return SparseRun(
        n,
        seed,
        condition.name,
        background,
        manifest_at,
        records_at,
        time.monotonic() - t0,
        setup,
        fed.bytes / n,
        retries,
        rss_before,
        rss_setup,
        _rss(),
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def sparse_child(n: int, seed: int, condition: SparseCondition, background: int) -> SparseRun:
    """:func:`sparse_run` in a fresh process, so its memory is its own."""
    spec = json.dumps({"n": n, "seed": seed, "condition": msgspec.to_builtins(condition), "bg": background})
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"child run failed: {done.stderr[-2000:]}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=SparseRun)


def bench_sparse(sizes: Sequence[int], seeds: int, budget: float) -> list[SparseRun]:
    """Each size: seeds in turn, each seed every condition, while the size's budget lasts (at
    least one run of each size)."""
    runs: list[SparseRun] = []
    for n in sizes:
        background = SPARSE_BACKGROUND if n <= 1000 else SPARSE_BACKGROUND_BIG
        started = time.monotonic()
        last = 0.0
        done = False
        for seed in range(seeds):
            for condition in SPARSE_CONDITIONS:
                spent = time.monotonic() - started
                if runs and runs[-1].n == n and spent + last > budget:
                    done = True
                    break
                t0 = time.monotonic()
                run = sparse_child(n, seed, condition, background)
                last = time.monotonic() - t0
                runs.append(run)
                print(
                    f"  N={n:,} seed {seed} {condition.name:24s} manifest {run.manifest_rounds} rounds,"
                    f" records {run.records_rounds} rounds; spread {run.seconds:.0f} s, setup"
                    f" {run.setup_seconds:.0f} s; {(run.rss_end - run.rss_before) / n / 1024:.1f} KiB/node",
                    flush=True,
                )
            if done:
                break
    return runs


def sparse_table(runs: list[SparseRun], serving: float | None) -> tuple[str, str, list[str]]:
    groups: dict[tuple[int, str], list[SparseRun]] = {}
    for run in runs:
        groups.setdefault((run.n, run.condition), []).append(run)
    table = []
    base: dict[int, float] = {}
    for (n, name), group in groups.items():
        manifest = _figure([r.manifest_rounds for r in group])
        records = _figure([r.records_rounds for r in group])
        if name == SPARSE_CONDITIONS[0].name:
            base[n] = manifest[1]
        extra = "" if name == SPARSE_CONDITIONS[0].name or n not in base else f"+{manifest[1] - base[n]:g}"
        table.append(
            [
                f"{n:,}",
                name,
                str(len(group)),
                f"{manifest[0]:g} / {manifest[1]:g}",
                extra,
                f"{records[0]:g} / {records[1]:g}",
                f"{statistics.median(r.seconds for r in group):.0f} s",
                f"{statistics.median(r.bytes_per_node for r in group) / 1024:,.1f} KiB",
                f"{sum(r.retries for r in group) / len(group):,.0f}",
            ]
        )
    headers = [
        "N",
        "loss / protocol",
        "runs",
        "manifest everywhere, median / p99 rounds",
        "extra vs no loss (p99)",
        "records everywhere, median / p99 rounds",
        "seconds (spread)",
        "bytes per node on the wire",
        "retries per run",
    ]
    memory = []
    for n in sorted({r.n for r in runs}):
        group = [r for r in runs if r.n == n]
        setup = statistics.median((r.rss_setup - r.rss_before) / n for r in group)
        end = statistics.median((r.rss_end - r.rss_before) / n for r in group)
        peak = statistics.median((r.max_rss - r.rss_before) / n for r in group)
        memory.append(
            [
                f"{n:,}",
                f"{group[0].background}",
                f"{setup / 1024:.1f} KiB",
                f"{end / 1024:.1f} KiB",
                f"{peak / 1024:.1f} KiB",
                f"{statistics.median(r.max_rss for r in group) / 2**20:,.0f} MiB",
                "-" if serving is None else f"{serving * 2**20 / end:,.0f}x",
            ]
        )
    memory_md = markdown_table(
        [
            "N",
            "origins published before",
            "RSS per node after setup",
            "after convergence",
            "peak",
            "peak RSS of the run",
            "a serving node's RSS / a simulated node's",
        ],
        memory,
    )
    verdicts = [
        f"- N={n:,}, 30% message loss: p99 {row[4]} rounds over no loss (manifest), aim ≤ +{AIM_EXTRA_AT_LOSS}: "
        + _met(float(row[4] or "+0") <= AIM_EXTRA_AT_LOSS)
        for row, ((n, name), _) in zip(table, groups.items(), strict=True)
        if name == SPARSE_CONDITIONS[1].name and row[4]
    ]
    return markdown_table(headers, table), memory_md, verdicts


def serving_rss(idle: float = 5.0) -> float | None:
    """MiB of resident memory of a real, idle ``coop serve`` (every process of its session)."""
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-gossip-"))
    cli = [sys.executable, "-m", "coop.node.cli"]
    proc = None
    try:
        root = folder / "node"
        subprocess.run([*cli, "init", str(root), "--name", "Bench"], env=env, capture_output=True, check=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [*cli, "serve", str(root), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            return None
        time.sleep(idle)
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) != proc.pid:
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except (OSError, ProcessLookupError):
                continue
        return total / 2**20
    except (OSError, subprocess.CalledProcessError):
        return None
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per size (sizes over 100: at most)")
    parser.add_argument("--sizes", default="10,100,1000", help="federation sizes, comma-separated")
    parser.add_argument("--big-budget", type=float, default=180.0, help="seconds for each size over 100")
    parser.add_argument("--background", type=int, default=10, help="origins already published")
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the big manifest")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats in the verification part")
    parser.add_argument("--sparse-sizes", default="1000,10000", help="roster + sparse talk sizes")
    parser.add_argument("--sparse-seeds", type=int, default=5, help="seeds per sparse size, at most")
    parser.add_argument("--sparse-budget", type=float, default=240.0, help="seconds per sparse size")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole run (caps the others)"
    )
    parser.add_argument("--no-serve", action="store_true", help="do not measure a real coop serve's RSS")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        condition = msgspec.convert(spec["condition"], SparseCondition)
        run = sparse_run(spec["n"], spec["seed"], condition, spec["bg"])
        print(msgspec.json.encode(run).decode())
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    sparse_sizes = [int(s) for s in args.sparse_sizes.split(",") if s]
    if args.budget is not None:
        # A third of it for the full-mesh sizes over 100, half for the sparse ones, the rest for parts 2-3.
        big = [n for n in sizes if n > 100]
        if big:
            args.big_budget = min(args.big_budget, args.budget / 6 / len(big))
        if sparse_sizes:
            args.sparse_budget = min(args.sparse_budget, args.budget / 2 / len(sparse_sizes))

    began = time.monotonic()
    code = code_version()
    load_before = os.getloadavg()[0]

    print(f"1. rounds to convergence: N = {sizes}, fanout {FANOUT}, {args.background} background origins")
    spread = bench_spread(sizes, args.seeds, args.big_budget, args.background)
    spread_md, spread_verdicts = spread_table(spread)
    seeds_used = {n: len(next(r for r in spread if r.n == n).seeds) for n in sizes}
    seeds_line = "- seeds: " + "; ".join(f"N={n:,}: 0–{k - 1} ({k})" for n, k in seeds_used.items())
    t_theory = time.monotonic()
    theory_md = theory_table(sizes)
    t_theory = time.monotonic() - t_theory
    print()
    print(spread_md)
    print(seeds_line)
    print()
    print(theory_md)
    print("\n".join(spread_verdicts))

    print("\n2. bytes per exchange")
    idle, moved = bench_bytes((10, 100, 1000), (1, 10, 100))
    idle_md, bytes_md, bytes_verdicts = bytes_tables(idle, moved)
    print(idle_md)
    print()
    print(bytes_md)
    print("\n".join(bytes_verdicts))

    print(f"\n3. manifest verification ({args.entries:,} entries)")
    verify_md, verify_notes = bench_verify(args.entries, args.repeats)
    print(verify_md)
    print("\n".join(verify_notes))

    print(f"\n4. a roster and sparse talk: N = {sparse_sizes}")
    serving = None if args.no_serve else serving_rss()
    print(f"  an idle coop serve: {serving if serving is None else f'{serving:.0f} MiB'} RSS")
    sparse = bench_sparse(sparse_sizes, args.sparse_seeds, args.sparse_budget)
    sparse_md, memory_md, sparse_verdicts = sparse_table(sparse, serving)
    print(sparse_md)
    print()
    print(memory_md)
    print("\n".join(sparse_verdicts))
    elapsed = time.monotonic() - began
    print(f"\nwall time {elapsed:.0f} s")

    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            "- everything in one process on `coop.federation.simulation` (real `Book` and protocol messages,"
            " in-memory network); request signatures are not used by the simulator",
            f"- load average when the run began: {load_before:.2f}; wall time of the whole run: {elapsed:.0f} s",
            "",
            "### 1. Rounds to convergence",
            "",
            f"Fanout {FANOUT}.  The federation starts converged: {args.background} origins (all of them when"
            f" N ≤ {args.background}) published a manifest with {BACKGROUND_RECORDS} records that every node holds"
            f" and mirrors.  Node 0 then publishes its next manifest with {NEW_RECORDS} new records; rounds until"
            " every node holds it (`records=False`), and, in separate runs, until every node mirrors its records"
            " (`records=True`).  Message loss = the simulator's `loss` (each request and each answer dropped"
            " independently); exchange loss = a whole exchange fails at its first message (bench subclass of"
            " `Federation`).  p99 is nearest-rank (the maximum below 100 seeds).  Sizes over 100 run as many seeds"
            f" as fit in {args.big_budget:.0f} s.",
            "",
            spread_md,
            "",
            seeds_line,
            "",
            "The push-pull estimate counts rounds of a *synchronous* model; a Monte Carlo of that abstract model"
            f" ({THEORY_SEEDS} seeds, {t_theory:.0f} s) beside it:",
            "",
            theory_md,
            "",
            *spread_verdicts,
            "",
            "### 2. Bytes per exchange",
            "",
            "Idle: two converged nodes (every origin published, records mirrored), one `sync_with`:",
            "",
            idle_md,
            "",
            "Changed: the origin adds d records and publishes; a converged peer runs one `sync_with` against"
            " the origin and gets the manifest and the d records.  Columns per step are bytes sent / received"
            " by the peer; new data = the d records' canonical bytes + their manifest entries (`entry_bytes`)."
            f" `sim` records are the simulator's (~130 B); `typical` ones ~{TYPICAL_RECORD:,} B with UUIDv7 uids"
            " (the release benchmark's mean record is 2,219 B).",
            "",
            bytes_md,
            "",
            *bytes_verdicts,
            "",
            "### 3. Manifest verification",
            "",
            verify_md,
            "",
            *verify_notes,
            "",
            "### 4. A roster and sparse talk at scale",
            "",
            "`Federation(n, roster=True, sparse=2)`: every node trusts the roster's members (one members"
            " mapping shared by every book, manifests do not list the federation) and syncs each round with"
            f" {FANOUT} of its own 4 peers (its ring neighbours and 2 random others); envelopes, entries, heads"
            " and record bytes every node holds alike are one shared object (the simulator's memory, not a"
            f" node's).  {SPARSE_BACKGROUND} origins ({SPARSE_BACKGROUND_BIG} over 1,000 nodes) published 2"
            " records each beforehand, verified by every node through `Book.receive`.  Then a random node"
            f" publishes {NEW_RECORDS} new records; one run counts the rounds until every node holds its"
            " manifest and until every node mirrors its records.  `OLD` = the behaviour before retries and"
            " reconciliation: a lost message ends the exchange (`sticky_loss`: whatever the protocol retries"
            " is lost too) and whole digests" + (" (`by_difference=False`)" if OLD_DIGEST else "") + "."
            f"  Each run in its own process; runs of a size while its {args.sparse_budget:.0f} s last.",
            "",
            sparse_md,
            "",
            "Memory per simulated node (RSS of the run's process minus its RSS before building, / N):",
            "",
            memory_md,
            "",
            "- a real idle `coop serve` (fresh `coop init`, every process of its session, after 5 s idle): "
            + ("not measured" if serving is None else f"{serving:.0f} MiB RSS"),
            *sparse_verdicts,
        ]
        print(f"\nappended to {append_section('Gossip: convergence, bytes, verification', section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
