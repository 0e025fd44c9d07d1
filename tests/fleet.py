"""A fleet of real `coop serve` processes on 127.0.0.1 with sparse pins, for tests and bench/.

Node ``i`` pins its ring neighbours and ``extra`` others drawn from a seeded random
generator (pins are one-way, as an operator adds them).  Every node is reached
through a counting :class:`relay.Relay` (its ``public_url`` is the relay's), so the
bytes and TCP connections of the whole fleet's gossip are measured where they travel.
Data directories are made in this process through the ``coop`` command line's entry
point (a process per command would cost a second each); the nodes run as processes of
their own, each in its own process group, started at once and all stopped by ``stop``.
With ``src`` (another checkout's ``src/``, e.g. an older commit's for a baseline), every
command and node runs that code instead, as processes.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from relay import Relay, RelayHub

import nodeproc
from nodeproc import NodeProcess, free_port

__all__ = ["Fleet", "coop_inline", "ring_pins"]


def coop_inline(*args: str) -> str:
    """Run a `coop` command in this process; returns what it printed (raises on a failure)."""
    from coop.node.cli import main

    out, err = io.StringIO(), io.StringIO()
    mask = os.umask(0o077)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.umask(mask)
    if code != 0:
        raise AssertionError(f"coop {' '.join(args)} failed ({code}): {err.getvalue()}")
    return out.getvalue()


def ring_pins(n: int, extra: int, rng: random.Random) -> list[list[int]]:
    """Whom each node pins: its two ring neighbours and ``extra`` other nodes at random."""
    pins: list[list[int]] = []
    for i in range(n):
        chosen = {(i - 1) % n, (i + 1) % n} - {i}
        others = [j for j in range(n) if j != i and j not in chosen]
        chosen |= set(rng.sample(others, min(extra, len(others))))
        pins.append(sorted(chosen))
    return pins


class Fleet:
    """N node processes with sparse pins, each behind a counting relay."""

    def __init__(
        self,
        base: Path,
        n: int,
        *,
        seed: int,
        extra: int = 2,
        interval: float = 1.0,
        fanout: int = 2,
        name: str = "fleet",
        src: Path | None = None,
    ) -> None:
        self.base = base
        self.src = src
        self.n = n
        self.interval = interval
        self.fanout = fanout
        self.rng = random.Random(seed)
        self.pins = ring_pins(n, extra, self.rng)
        self.hub = RelayHub()
        self.roots = [base / f"{name}-{i:03d}" for i in range(n)]
        self.ports = [free_port() for _ in range(n)]
        self.relays: list[Relay] = [self.hub.add(port) for port in self.ports]
        self.nodes = [NodeProcess(root, port=port) for root, port in zip(self.roots, self.ports, strict=True)]
        self.ids: list[str] = []
        self.tokens: dict[int, str] = {}

    # -- setting up --------------------------------------------------------------------------

    def init(self, *, admins: Sequence[int] = (), pin: bool = True) -> None:
        """Make every data directory, set its interval and URL, add its pins and admins."""
        for i, root in enumerate(self.roots):
            self.ids.append(self.coop("init", str(root), "--name", f"Co-op {i}").strip())
            path = root / "node.toml"
            config = tomllib.loads(path.read_text(encoding="utf-8"))
            config["node"]["public_url"] = self.relays[i].url
            config["federation"].update({"interval_seconds": self.interval, "fanout": self.fanout})
            # The fleet's own pipeline runs when asked (POST /admin/process), not every 2 s.
            config["pipeline"]["interval_seconds"] = 30.0
            config["rate_limit"].update({"per_token_burst": 10_000, "per_ip_burst": 10_000})
            path.write_text(tomli_w.dumps(config), encoding="utf-8")
        if pin:
            for i, root in enumerate(self.roots):
                for j in self.pins[i]:
                    self.coop("peers", "add", str(root), self.relays[j].url, "--key", self.ids[j])
        for i in admins:
            self.tokens[i] = self.coop("member", "add", str(self.roots[i]), "ada", "--admin").strip()

    def roster(self, name: str = "fleet", *, threshold: int = 1) -> None:
        """Make every node a member of one federation roster (``coop federation``).

        Node 0 founds it; the others trust version 1 out of band; one proposal admits them
        all; each admitted co-op signs it (proof of possession) and node 0 merges the
        signatures, which adopts version 2; every node is given version 2 (gossip would bring
        it too, but the measurement starts from a roster in force everywhere)."""
        work = self.base / f"{self.roots[0].name}-roster"
        work.mkdir(parents=True, exist_ok=True)
        founder = str(self.roots[0])
        self.coop("federation", "create", founder, "--name", name, "--threshold", str(threshold))
        first = work / "roster-1.json"
        first.write_text(self.coop("federation", "export", founder))
        for root in self.roots[1:]:
            self.coop("federation", "join", str(root), str(first))
        admit: list[str] = []
        for i in range(1, self.n):
            admit += ["--admit", self.ids[i], "--url", self.relays[i].url, "--name", f"Co-op {i}"]
        proposal = self.coop("federation", "propose", founder, *admit).strip()
        unsigned = work / "proposal.json"
        unsigned.write_text(self.coop("federation", "export", founder, "--proposal", proposal))
        for i, root in enumerate(self.roots[1:], start=1):
            self.coop("federation", "sign", str(root), str(unsigned))
            signed = work / f"proposal-{i}.json"
            signed.write_text(self.coop("federation", "export", str(root), "--proposal", proposal))
            self.coop("federation", "sign", founder, str(signed))
        latest = work / "roster-2.json"
        latest.write_text(self.coop("federation", "export", founder))
        for root in self.roots[1:]:
            self.coop("federation", "join", str(root), str(latest))

    def coop(self, *args: str) -> str:
        """A `coop` command on this fleet's code: in this process, or a process on ``src``."""
        if self.src is None:
            return coop_inline(*args)
        result = subprocess.run(
            [sys.executable, "-m", "coop.node.cli", *args],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"coop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def _env(self) -> dict[str, str]:
        env = dict(nodeproc.ENV)
        if self.src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.src), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def start(self, timeout: float = 300.0) -> None:
        """Start every node at once; returns when all answer /healthz (or raises, all stopped)."""
        saved = dict(nodeproc.ENV)
        nodeproc.ENV.update(self._env())  # what NodeProcess starts its process with
        try:
            with ThreadPoolExecutor(max_workers=min(self.n, 64)) as pool:
                futures = [pool.submit(node.start, timeout) for node in self.nodes]
                errors = [f.exception() for f in futures]
        finally:
            nodeproc.ENV.clear()
            nodeproc.ENV.update(saved)
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise AssertionError(f"{len(failed)} of {self.n} nodes did not start: {failed[0]}")

    def stop(self) -> None:
        """Stop every node: SIGTERM to each process group, then SIGKILL to what is left."""
        procs = [node.proc for node in self.nodes if node.proc is not None and node.proc.poll() is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.hub.close()

    # -- a record, and who holds it ----------------------------------------------------------

    def release_public(self, i: int, word: str) -> str:
        """A public record shared, processed and released on node ``i``; returns its uid."""
        token = self.tokens[i]
        with httpx.Client(
            base_url=self.nodes[i].url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            content = (
                f"User: Please remember the code word {word} for our trip.\n\n"
                f"Assistant: Noted: the code word is {word}. I will use it when you ask."
            )
            body = {"label": "good", "consent": True, "content": content, "scope": "public"}
            response = client.post("/api/v1/contributions", json=body)
            assert response.status_code == 201, response.text
            uid = str(response.json()["uid"])
            assert client.post("/api/v1/admin/process").status_code == 200
            wait_until(lambda: self._accepted(i, uid), f"node {i} accepted {uid}", within=60)
            response = client.post("/api/v1/admin/releases")
            assert response.status_code == 201, response.text
        return uid

    def _accepted(self, i: int, uid: str) -> bool:
        row = self._read(i, "SELECT state FROM contributions WHERE uid = ?", (uid,))
        return row is not None and row[0] == "accepted"

    def holders(self, uid: str) -> set[int]:
        """The nodes holding a mirrored copy of the record ``uid`` (its origin not counted)."""
        return {
            i for i in range(self.n) if self._read(i, "SELECT 1 FROM mirror_records WHERE uid = ?", (uid,))
        }

    def _read(self, i: int, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        uri = f"file:{self.roots[i] / 'coop.sqlite3'}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                row = conn.execute(sql, args).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else tuple(row)

    # -- what it costs -----------------------------------------------------------------------

    def traffic(self) -> dict[str, int]:
        """Connections accepted and bytes relayed, over every node's relay, since the last reset."""
        return {
            "connections": sum(r.connections for r in self.relays),
            "requests": sum(r.up.messages for r in self.relays),
            "bytes": sum(r.up_bytes + r.down_bytes for r in self.relays),
            "payload": sum(r.up.body_bytes + r.down.body_bytes for r in self.relays),
        }

    def reset_traffic(self) -> None:
        for relay in self.relays:
            relay.reset()

    def rss_mib(self) -> list[float]:
        """Each node's resident memory (its process group's processes), MiB."""
        out = []
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            out.append(sum(_rss_kib(pid) for pid in _group(node.proc.pid)) / 1024)
        return out


def wait_until(check: Callable[[], object], what: str, *, within: float, every: float = 0.2) -> None:
    """Poll ``check`` until it holds (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"never {what} within {within:g} s")


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp
            pids.append(int(entry.name))
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
