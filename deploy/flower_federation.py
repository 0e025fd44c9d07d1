"""Flower's deployment engine next to co-op nodes: one SuperLink, one SuperNode per node.

    python deploy/flower_federation.py up --workdir W --node URL,TOKEN_FILE [--node ...]

What it sets up, and why:

* **TLS** everywhere: a private CA and a SuperLink certificate for 127.0.0.1
  (``W/tls``); SuperNodes and ``flwr run`` trust only that CA.
* **SuperNode authentication**: the SuperLink runs with ``--enable-supernode-auth``;
  each SuperNode has its own key pair, registered with ``flwr supernode register``
  before it may connect.
* **Nothing installed at run time**: ``--disable-runtime-dependency-installation``;
  the app's code is the installed ``coop-flywheel`` package.
* **The SuperLink on loopback**: its one HTTP port (Fleet, Control and runtime
  APIs) is bound to 127.0.0.1; put a TLS-terminating proxy in front to expose it.
* **SuperNodes that cannot read the data**: a ClientApp is code the requester
  ships, so a SuperNode must not see its node's data directory.  Two ways:

  - ``--isolation user``: the SuperNode runs as an unprivileged user (``nobody``)
    and the data directory is private to the node's user (mode 0700).  The
    Python it runs must be readable by that user (not under ``/root``).
  - ``--isolation namespace`` (the default when started as root): the SuperNode
    runs in its own mount namespace where each node's data directory is covered
    by an empty read-only tmpfs -- what systemd's ``InaccessiblePaths=`` does.

  Either way the ClientApp reaches the data only through the node's local
  evaluation interface, which answers with aggregates; it gets a copy of the
  eval token in its own folder, nothing else of the node's.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BIN: Final = Path(sys.executable).parent
ENV: Final = {
    **os.environ,
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
}


_HANDED_OUT: set[int] = set()


def _worker_ports() -> range | None:
    """Under pytest-xdist, this worker's own slice of 10000-31999 (below the kernel's ephemeral
    range, so no client socket takes one): two test processes never hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = (32_000 - 10_000) // count
    low = 10_000 + int(worker[2:]) % count * span
    return range(low, low + span)


def free_port() -> int:
    """A free port on 127.0.0.1, never one this process handed out before.

    The port is released before its server binds it, so the kernel may offer it again to
    the next caller: two servers started together would then share an address.  Test
    processes running side by side (pytest-xdist) draw from disjoint slices.
    """
    slice_ = _worker_ports()
    for attempt in range(100):
        with socket.socket() as sock:
            if slice_ is None:
                sock.bind(("127.0.0.1", 0))
            else:
                candidate = slice_[
                    (os.getpid() * 7919 + attempt * 104_729 + len(_HANDED_OUT) * 31) % len(slice_)
                ]
                if candidate in _HANDED_OUT:
                    continue
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh port on 127.0.0.1 in 100 tries")


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a SuperLink certificate for 127.0.0.1 and localhost: (ca.crt, server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "co-op flywheel flower CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    ca_path, cert_path, key_path = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return ca_path, cert_path, key_path


def make_supernode_keys(folder: Path) -> tuple[Path, Path]:
    """A SuperNode's authentication key pair (OpenSSH ECDSA): (private, public)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = folder / "supernode.key"
    public = folder / "supernode.pub"
    _write(
        private,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    _write(
        public,
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        0o644,
    )
    return private, public


class FlowerFederation:
    """A SuperLink and SuperNodes for the given co-op nodes; stop() ends them all."""

    def __init__(
        self,
        workdir: Path,
        nodes: list[tuple[str, Path]],
        *,
        hide: list[Path] | None = None,
        isolation: str = "auto",
        run_as: str = "nobody",
    ) -> None:
        self.workdir = workdir.resolve()
        self.nodes = nodes
        self.hide = [p.resolve() for p in (hide or [])]
        if isolation == "auto":
            isolation = "namespace" if os.geteuid() == 0 and shutil.which("unshare") else "none"
        if isolation not in ("user", "namespace", "none"):
            raise ValueError(f"unknown isolation {isolation!r}")
        self.isolation = isolation
        self.run_as = run_as if isolation == "user" else ""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.home = self.workdir / "flwr-home"
        self.ca: Path | None = None

    def start(self, *, timeout: float = 60.0) -> FlowerFederation:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        ca, cert, key = make_tls(self.workdir / "tls")
        self.ca = ca
        self.home.mkdir(exist_ok=True)
        connection = {"address": self.address, "root-certificates": str(ca)}
        (self.home / "config.toml").write_text(
            tomli_w.dumps({"superlink": {"default": "coop", "coop": connection}})
        )
        env = {**ENV, "FLWR_HOME": str(self.home)}
        self._spawn(
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--database", str(self.workdir / "superlink.db"),
            ],
            self.workdir / "superlink.log",
            env,
        )  # fmt: skip
        self._wait_port(self.port, timeout)
        for index, (url, token_file) in enumerate(self.nodes):
            folder = self.workdir / f"supernode-{index}"
            folder.mkdir(exist_ok=True)
            private, public = make_supernode_keys(folder)
            register = subprocess.run(
                [str(BIN / "flwr"), "supernode", "register", str(public), "coop"],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if register.returncode != 0:
                raise RuntimeError(f"flwr supernode register failed: {register.stdout}{register.stderr}")
            token_copy = folder / "eval.token"
            shutil.copyfile(token_file, token_copy)
            node_home = folder / "home"
            node_home.mkdir(exist_ok=True)
            if self.run_as:
                entry = pwd.getpwnam(self.run_as)
                for path in (folder, node_home, token_copy, private):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            token_copy.chmod(0o400)
            runtime_port = free_port()
            command = [
                str(BIN / "flower-supernode"),
                "--superlink", self.address,
                "--root-certificates", str(ca),
                "--auth-supernode-private-key", str(private),
                "--port", str(runtime_port),
                "--node-config", f"coop-eval-url='{url}' coop-eval-token-file='{token_copy}'",
            ]  # fmt: skip
            node_env = {**env, "HOME": str(node_home), "FLWR_HOME": str(node_home)}
            if self.isolation == "user":
                variables = [f"{k}={v}" for k, v in node_env.items()]
                command = ["runuser", "-u", self.run_as, "--", "env", *variables, *command]
            elif self.isolation == "namespace":
                # Cover every node's data directory with an empty read-only tmpfs, then run.
                covers = [f"mount -t tmpfs -o ro,size=4k,mode=0500 none '{path}'" for path in self.hide]
                script = "set -e; " + "; ".join([*covers, 'exec "$@"'])
                command = [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    script,
                    "sh",
                    *command,
                ]
            self._spawn(command, folder / "supernode.log", node_env, cwd=folder)
        return self

    def _spawn(self, command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> None:
        with log.open("ab") as out:
            self.processes.append(
                subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
                )
            )

    @staticmethod
    def _wait_port(port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the SuperLink did not listen on {port}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up"])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--node", action="append", required=True, metavar="URL,TOKEN_FILE[,DATA_DIR]")
    parser.add_argument("--isolation", choices=["auto", "user", "namespace", "none"], default="auto")
    args = parser.parse_args()
    parts = [text.split(",") for text in args.node]
    nodes = [(p[0], Path(p[1])) for p in parts]
    hide = [Path(p[2]) for p in parts if len(p) > 2]
    federation = FlowerFederation(Path(args.workdir), nodes, hide=hide, isolation=args.isolation).start()
    print(f"SuperLink {federation.address}; root certificate {federation.ca}")
    print(f"coop eval request ... --superlink {federation.address} --root-certificates {federation.ca}")
    try:
        while all(p.poll() is None for p in federation.processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        federation.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
