"""Real node processes for integration tests: `coop` run as a separate process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flower_federation import free_port  # deploy/: one free-port helper for every server started

ENV = {
    **os.environ,
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}


def coop(
    *args: str, check: bool = True, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `coop` command line as a separate process."""
    result = subprocess.run(
        [sys.executable, "-m", "coop.node.cli", *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"coop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class NodeProcess:
    """`coop serve DIR` in its own process group, so kill -9 takes all of it."""

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        server: str = "granian",
        args: tuple[str, ...] = (),
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.args = args  # more `coop serve` options
        self.wrapper = wrapper  # a command the node runs under, e.g. ("faketime", "-f", "+240s")
        self.port = port or free_port()
        self.server = server
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / f"{root.name}-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> NodeProcess:
        command = [*self.wrapper, sys.executable, "-m", "coop.node.cli", "serve", str(self.root)]
        command += ["--port", str(self.port), "--server", self.server, *self.args]
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill9()
        raise AssertionError(f"node did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill9()
