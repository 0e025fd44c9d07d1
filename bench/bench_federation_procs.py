"""Real `coop serve` processes with sparse pins: connections, convergence, bytes and memory.

Every node is reached through a counting TCP relay in this process (its
``public_url`` is the relay's), so connections and bytes are counted where they
travel: bytes are TCP payload (HTTP headers and bodies; TCP/IP headers and
handshakes are not in them), requests and bodies are read off the HTTP/1.1 stream.
For the idle comparison, when run as root, the IP bytes and TCP segments on the
loopback interface are counted too (an AF_PACKET socket with a BPF port filter).

1. **Idle exchanges** (``--idle-seconds``): two nodes pinning each other, one
   exchange per interval, converged; ours beside ``--baseline-rev`` (the commit
   before connection reuse, its ``src/`` taken with ``git archive``), in the same
   run: TCP connections per exchange, and header and payload bytes per exchange.
2. **Convergence** (``--n`` nodes): node i pins its ring neighbours and ``--extra``
   random others (seeded), one-way.  A public record is released on node 0, then
   on ``--origins - 1`` other random nodes, one at a time; each node's database is
   polled until all hold it or ``--deadline-rounds`` intervals passed.  Baseline:
   pins only (today: a node trusts only origins it pinned).  With
   ``--trust roster`` (or ``both``), every node is a member of one federation
   roster (k-of-n signed, here k = 1; built with ``coop federation``, see
   ``Fleet.roster`` in ``tests/fleet.py``), the comparison the issue asks for.  Reported: rounds (seconds / interval), seconds, nodes reached,
   bytes and connections while it spread, idle bytes per second of the whole
   fleet, RSS per node.

All nodes of a fleet start at once and are stopped (process-group SIGTERM, then
SIGKILL) on exit, on an error and on Ctrl-C.

    .venv/bin/python bench/bench_federation_procs.py [--n 50] [--interval 2] [--trust pins|roster|both]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import os
import random
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "deploy")]

from fleet import Fleet, wait_until  # noqa: E402  (tests/ is put on the path just above)
from results import append_section, code_version, command, machine, markdown_table  # noqa: E402

BASELINE_REV: Final = "e7a8577"  # main before one transport was kept across gossip rounds
FANOUT: Final = 3  # the node's default
IDLE_PAYLOAD_AIM: Final = 128  # bytes of body each way in an idle exchange (issue 14)


def _rev_src(rev: str, into: Path) -> Path:
    """``src/`` of commit ``rev``, extracted with ``git archive`` (no change to the checkout)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into / "src"


class Wire:
    """IP bytes and TCP segments on the loopback interface to or from ``ports``, counted by an
    AF_PACKET socket with a BPF filter (root only; None from :meth:`open` otherwise)."""

    def __init__(self, sock: socket.socket, ports: set[int], program: ctypes.Array[ctypes.c_char]) -> None:
        self.sock = sock
        self.ports = ports
        self._program = program  # the kernel copied it; kept for its address's sake
        self.bytes = 0
        self.segments = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wire", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, ports: Sequence[int]) -> Wire | None:
        code = _bpf_tcp_ports(sorted(ports))
        program = ctypes.create_string_buffer(code, len(code))
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        except (PermissionError, AttributeError, OSError):
            return None
        sock.setsockopt(
            socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("HL", len(code) // 8, ctypes.addressof(program))
        )
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        return cls(sock, set(ports), program)

    def _run(self) -> None:
        while not self._stop:
            try:
                frame, address = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != _PACKET_OUTGOING or len(frame) < 54:  # each packet is seen leaving and arriving
                continue
            ihl = (frame[14] & 0xF) * 4
            sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
            if sport in self.ports or dport in self.ports:
                self.bytes += len(frame) - 14  # the IP datagram: without lo's pseudo Ethernet header
                self.segments += 1

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


_ETH_P_ALL: Final = 3
_SO_ATTACH_FILTER: Final = 26
_PACKET_OUTGOING: Final = 4


def _bpf_tcp_ports(ports: Sequence[int]) -> bytes:
    """A classic BPF program: IPv4 TCP, unfragmented, source or destination port in ``ports``."""
    ins: list[tuple[int, int | str, int | str, int]] = [
        (0x28, 0, 0, 12),  # ldh [12]: EtherType
        (0x15, 0, "drop", 0x0800),  # IPv4
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, "drop", 6),  # TCP
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, "drop", 0, 0x1FFF),  # not a later fragment
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 14),  # ldh [x+14]: source port
        *[(0x15, "accept", 0, port) for port in ports],
        (0x48, 0, 0, 16),  # ldh [x+16]: destination port
        *[(0x15, "accept", 0, port) for port in ports],
    ]
    labels = {"drop": len(ins), "accept": len(ins) + 1}
    ins += [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]  # ret 0 (drop), ret 256 KiB (accept)
    out = b""
    for i, (code, jt, jf, k) in enumerate(ins):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out += struct.pack("HBBI", code, jt, jf, k)
    return out


@dataclass
class Idle:
    label: str
    exchanges: int
    connections: int
    request_headers: float
    request_body: float
    response_headers: float
    response_body: float
    wire_bytes: float | None  # IP bytes on lo per exchange, TCP/IP headers and handshakes included
    wire_segments: float | None

    def row(self) -> list[str]:
        per = self.request_headers + self.request_body + self.response_headers + self.response_body
        return [
            self.label,
            str(self.exchanges),
            f"{self.connections / max(1, self.exchanges):.2f}",
            f"{self.request_headers:.0f} + {self.request_body:.0f}",
            f"{self.response_headers:.0f} + {self.response_body:.0f}",
            f"{per:.0f}",
            "-" if self.wire_bytes is None else f"{self.wire_bytes:.0f}",
            "-" if self.wire_segments is None else f"{self.wire_segments:.1f}",
        ]


def idle_pair(base: Path, label: str, seconds: float, src: Path | None) -> Idle:
    """Two nodes, one exchange each way per 0.5 s; counts after they converged."""
    fleet = Fleet(base, 2, seed=1, extra=0, interval=0.5, fanout=1, name=f"idle-{label}", src=src)
    try:
        fleet.init()
        fleet.start()
        wait_until(lambda: all(r.up.messages >= 4 for r in fleet.relays), "the first exchanges", within=60)
        wire = Wire.open([r.port for r in fleet.relays])  # client <-> relay: the node-to-node leg
        fleet.reset_traffic()
        time.sleep(seconds)
        relays = fleet.relays
        exchanges = sum(min(r.up.messages, r.down.messages) for r in relays)
        if wire is not None:
            wire.close()
        return Idle(
            label=label,
            exchanges=exchanges,
            connections=sum(r.connections for r in relays),
            request_headers=sum(r.up.header_bytes for r in relays) / max(1, exchanges),
            request_body=sum(r.up.body_bytes for r in relays) / max(1, exchanges),
            response_headers=sum(r.down.header_bytes for r in relays) / max(1, exchanges),
            response_body=sum(r.down.body_bytes for r in relays) / max(1, exchanges),
            wire_bytes=None if wire is None else wire.bytes / max(1, exchanges),
            wire_segments=None if wire is None else wire.segments / max(1, exchanges),
        )
    finally:
        fleet.close()


@dataclass
class Spread:
    trust: str
    origin: int
    pinned_by: int  # nodes that pinned the origin
    reached: int
    seconds: float
    converged: bool
    bytes: int
    connections: int
    requests: int


def convergence(
    base: Path, trust: str, args: argparse.Namespace, rng: random.Random
) -> tuple[list[Spread], dict[str, float]]:
    origins = [0, *rng.sample(range(1, args.n), args.origins - 1)]
    fleet = Fleet(
        base, args.n, seed=args.seed, extra=args.extra, interval=args.interval, fanout=FANOUT, name=trust
    )
    spreads: list[Spread] = []
    facts: dict[str, float] = {}
    try:
        started = time.monotonic()
        fleet.init(admins=origins)
        if trust == "roster":
            fleet.roster("bench", threshold=1)  # every node a member: `coop federation` (tests/fleet.py)
        facts["setup_s"] = time.monotonic() - started
        started = time.monotonic()
        fleet.start(timeout=600)
        facts["start_s"] = time.monotonic() - started
        print(f"[{trust}] {args.n} nodes up in {facts['start_s']:.1f} s", flush=True)
        # Idle cost of the whole fleet once every node gossiped a few rounds.
        time.sleep(args.interval * 5)
        fleet.reset_traffic()
        time.sleep(args.interval * 5)
        idle = fleet.traffic()
        facts["idle_bytes_per_s"] = idle["bytes"] / (args.interval * 5)
        facts["idle_requests_per_s"] = idle["requests"] / (args.interval * 5)
        facts["idle_connections_per_s"] = idle["connections"] / (args.interval * 5)
        deadline = args.deadline_rounds * args.interval
        for origin in origins:
            uid = fleet.release_public(origin, f"word{secrets.token_hex(6)}")
            fleet.reset_traffic()
            t0 = time.monotonic()
            want = set(range(args.n)) - {origin}
            reached: set[int] = set()
            while time.monotonic() - t0 < deadline:
                reached = fleet.holders(uid)
                if reached >= want:
                    break
                time.sleep(0.5)
            seconds = time.monotonic() - t0
            traffic = fleet.traffic()
            spread = Spread(
                trust=trust,
                origin=origin,
                pinned_by=sum(1 for i in range(args.n) if origin in fleet.pins[i]),
                reached=len(reached & want),
                seconds=seconds,
                converged=reached >= want,
                bytes=traffic["bytes"],
                connections=traffic["connections"],
                requests=traffic["requests"],
            )
            spreads.append(spread)
            print(f"[{trust}] {spread}", flush=True)
        rss = fleet.rss_mib()
        facts["rss_median_mib"] = statistics.median(rss)
        facts["rss_max_mib"] = max(rss)
    finally:
        fleet.close()
    return spreads, facts


def _code_run() -> str:
    """Where the code that ran came from, when not this checkout's src/ (a PYTHONPATH snapshot)."""
    import coop

    src = Path(coop.__file__).resolve().parents[1]
    if src == ROOT / "src":
        return ""
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        digest.update(path.relative_to(src.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return f"; code run: a snapshot at {src} (src/*.py sha256 {digest.hexdigest()[:12]})"


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGINT end the run as Ctrl-C does: the ``finally`` blocks stop every node.
    (SIGINT too, explicitly: a shell starting the bench in the background ignores it.)"""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="nodes of the fleet (0: the idle comparison only)")
    parser.add_argument("--interval", type=float, default=2.0, help="gossip interval of every node, s")
    parser.add_argument("--extra", type=int, default=2, help="random pins per node beside the ring")
    parser.add_argument("--origins", type=int, default=3, help="records released, each on another node")
    parser.add_argument("--deadline-rounds", type=float, default=40, help="give up on a record after this")
    parser.add_argument("--trust", choices=["pins", "roster", "both"], default="pins")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="0: skip the idle comparison")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    load = os.getloadavg()
    wall = time.monotonic()
    idle_rows: list[Idle] = []
    spreads: list[Spread] = []
    facts: dict[str, dict[str, float]] = {}
    with _terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix="coop-procs-") as tmp:
        base = Path(tmp)
        if args.idle_seconds > 0:
            old = _rev_src(args.baseline_rev, base / "baseline")
            idle_rows.append(idle_pair(base, f"baseline {args.baseline_rev}", args.idle_seconds, old))
            idle_rows.append(idle_pair(base, "ours", args.idle_seconds, None))
            for row in idle_rows:
                print(row, flush=True)
        modes = ["pins", "roster"] if args.trust == "both" else [args.trust]
        if args.n < 2:
            modes = []  # --n 0: the idle comparison alone
        for trust in modes:
            got, facts[trust] = convergence(base, trust, args, rng)
            spreads += got
    section = [
        f"Command: `{command(__file__)}`",
        "",
        f"- machine: {machine()}",
        f"- code: {code_version()}{_code_run()}",
        f"- load average when the run began: {load[0]:.2f}, at its end {os.getloadavg()[0]:.2f};"
        f" wall time {time.monotonic() - wall:.0f} s",
        f"- seed {args.seed}; bytes are TCP payload through a counting relay in front of each node"
        " (HTTP headers + bodies; TCP/IP headers and handshakes not counted)",
    ]
    if idle_rows:
        section += [
            "",
            f"Idle exchanges, 2 nodes, interval 0.5 s, fanout 1, {args.idle_seconds:g} s each"
            " (ours beside the baseline commit, same run):",
            "",
            markdown_table(
                [
                    "tree",
                    "exchanges",
                    "TCP connections / exchange",
                    "request B (headers + body)",
                    "response B (headers + body)",
                    "HTTP B / exchange",
                    "IP B on the wire / exchange",
                    "TCP segments / exchange",
                ],
                [row.row() for row in idle_rows],
            ),
        ]
        if len(idle_rows) == 2 and idle_rows[0].connections:
            base_row, ours = idle_rows
            ratio = (ours.connections / max(1, ours.exchanges)) / (
                base_row.connections / max(1, base_row.exchanges)
            )
            section.append(f"\nConnections per idle exchange, ours / baseline: {ratio:.3f}")
            if ours.wire_bytes is not None and base_row.wire_bytes:
                section.append(
                    f"IP bytes on the wire per idle exchange, ours / baseline: {ours.wire_bytes:.0f} /"
                    f" {base_row.wire_bytes:.0f} = {ours.wire_bytes / base_row.wire_bytes:.2f}"
                )
        ours = idle_rows[-1]
        reused = ours.connections == 0
        small = max(ours.request_body, ours.response_body) <= IDLE_PAYLOAD_AIM
        section.append(
            f"\n**Aims.** Connections reused across rounds: {'met' if reused else 'NOT met'}"
            f" ({ours.connections} new connections in {ours.exchanges} idle exchanges); idle payload"
            f" <= {IDLE_PAYLOAD_AIM} B each way: {'met' if small else 'NOT met'}"
            f" ({ours.request_body:.0f} B request body, {ours.response_body:.0f} B response body; the"
            f" headers, {ours.request_headers:.0f} B + {ours.response_headers:.0f} B, are most of an"
            " idle exchange: the request signature and the server's security headers)."
        )
    for trust, f in facts.items():
        section += [
            "",
            f"{args.n} processes, trust = {trust}: interval {args.interval:g} s, fanout {FANOUT}, pins ="
            f" ring + {args.extra} random (one-way); setup {f['setup_s']:.0f} s, all started in"
            f" {f['start_s']:.0f} s; RSS per node median {f['rss_median_mib']:.0f} MiB, max"
            f" {f['rss_max_mib']:.0f} MiB; idle fleet {f['idle_bytes_per_s'] / 1024:.1f} KiB/s,"
            f" {f['idle_requests_per_s']:.1f} requests/s, {f['idle_connections_per_s']:.2f} new"
            " connections/s",
        ]
    if spreads:
        section += [
            "",
            markdown_table(
                [
                    "trust",
                    "origin",
                    "pinned by",
                    "reached (of N-1)",
                    "converged",
                    "seconds",
                    "rounds",
                    "KiB while spreading",
                    "requests",
                    "new connections",
                ],
                [
                    [
                        s.trust,
                        str(s.origin),
                        str(s.pinned_by),
                        str(s.reached),
                        "yes" if s.converged else "no",
                        f"{s.seconds:.1f}",
                        f"{s.seconds / args.interval:.1f}",
                        f"{s.bytes / 1024:.0f}",
                        str(s.requests),
                        str(s.connections),
                    ]
                    for s in spreads
                ],
            ),
        ]
    if spreads:
        by_trust: dict[str, list[Spread]] = {}
        for spread in spreads:
            by_trust.setdefault(spread.trust, []).append(spread)
        lines = []
        for trust, got in by_trust.items():
            done = all(s.converged for s in got)
            rounds = max(s.seconds for s in got) / args.interval
            lines.append(
                f"{trust}: {'every record reached all' if done else 'NOT every record reached all'}"
                f" {args.n - 1} other nodes (slowest {rounds:.1f} rounds; fewest reached"
                f" {min(s.reached for s in got)})"
            )
        section.append(
            f"\n**Convergence from any node, {args.n} processes, sparse pins.** " + "; ".join(lines) + "."
        )
    text = "\n".join(section)
    print(text)
    if args.no_record:
        return
    print(f"\nappended to {append_section('Federation: real coop serve processes, sparse pins', section)}")


if __name__ == "__main__":
    main()
