"""A small HTTP/1.1 keep-alive load generator (the fallback when ``wrk`` is not installed).

Each of N connections sends prebuilt request bytes one at a time, reads the
status line and headers, then exactly ``Content-Length`` bytes of body.  A
connection stops *sending* at the deadline and waits for its answer, so every
request sent is counted.  It runs in the same interpreter as its caller: on a
small machine it takes CPU from the server under test, which ``wrk`` does far
less, so prefer ``wrk``.

    .venv/bin/python bench/loadgen.py --port 8765 --bodies bodies.jsonl --connections 8 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

__all__ = ["LoadResult", "build_requests", "run_load"]

_MAX_HEAD = 64 * 1024


class LoadResult(msgspec.Struct, frozen=True):
    """What one load run saw: counts, the measured window and latency percentiles."""

    tool: str
    connections: int
    sent: int
    received: int
    created: int  # 201 responses
    other: int  # any other status
    window_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # connection, read or timeout errors

    @property
    def rate(self) -> float:
        """201 responses per second over the window."""
        return self.created / self.window_s if self.window_s > 0 else 0.0


def build_requests(host: str, port: int, path: str, bodies: Sequence[bytes], token: str) -> list[bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: "
    ).encode()
    return [head + str(len(body)).encode() + b"\r\n\r\n" + body for body in bodies]


class _Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.created = 0
        self.other = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.last = 0.0


async def _connection(
    host: str, port: int, requests: list[bytes], first: int, deadline: float, tally: _Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEAD)
    index = first
    try:
        while time.monotonic() < deadline:
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(request)
            tally.sent += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                    break
            if length is None:
                raise ValueError("response without Content-Length (chunked responses are not supported)")
            if length:
                await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - started)
            tally.received += 1
            tally.last = time.monotonic()
            if status == 201:
                tally.created += 1
            else:
                tally.other += 1
    finally:
        writer.close()


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _run(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float
) -> tuple[_Tally, float]:
    tally = _Tally()
    started = time.monotonic()
    deadline = started + seconds
    tasks = [
        asyncio.create_task(_connection(host, port, requests, i * 7919, deadline, tally))
        for i in range(connections)
    ]
    # Bounded: every connection stops sending at the deadline; 30 s more for answers.
    done, pending = await asyncio.wait(tasks, timeout=seconds + 30)
    for task in pending:
        task.cancel()
    tally.errors += len(pending) + sum(1 for task in done if task.exception() is not None)
    return tally, started


def run_load(
    host: str, port: int, path: str, bodies: Sequence[bytes], token: str, *, connections: int, seconds: float
) -> LoadResult:
    requests = build_requests(host, port, path, bodies, token)
    tally, started = asyncio.run(_run(host, port, requests, connections, seconds))
    ordered = sorted(tally.latencies)
    return LoadResult(
        tool="python-loadgen",
        connections=connections,
        sent=tally.sent,
        received=tally.received,
        created=tally.created,
        other=tally.other,
        window_s=max(tally.last - started, 1e-9),
        p50_ms=_percentile(ordered, 50) * 1e3,
        p90_ms=_percentile(ordered, 90) * 1e3,
        p99_ms=_percentile(ordered, 99) * 1e3,
        max_ms=(ordered[-1] if ordered else 0.0) * 1e3,
        errors=tally.errors,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/contributions")
    parser.add_argument("--bodies", type=Path, required=True, help="one JSON body a line")
    parser.add_argument("--token", default="none")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    bodies = [line for line in args.bodies.read_bytes().splitlines() if line]
    result = run_load(
        "127.0.0.1",
        args.port,
        args.path,
        bodies,
        args.token,
        connections=args.connections,
        seconds=args.seconds,
    )
    print(msgspec.json.format(msgspec.json.encode(result)).decode())
    print(f"{result.rate:.0f} 201/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
