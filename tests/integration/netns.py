"""Several hosts on one machine: Linux network namespaces on a bridge, for multi-host tests.

Each host is a network namespace with ``lo`` and one veth (``eth0``) whose other end is a port of a
bridge in a **hub** namespace; the hub also holds the bridge's own address (the last one of the
subnet), which is where the test "stands".  Nothing is added to the root namespace: no bridge, no
route, no address, so no traffic can leave the namespaces the lab creates.

The test process lives in the root namespace.  It reaches the hosts through :class:`NsClient`: a
worker thread that has joined a namespace with ``setns(2)`` (a network namespace belongs to a
thread, not to a process, so the rest of the test stays where it was); every socket that thread
opens is opened inside that namespace.  Processes are started with ``ip netns exec``.

Run as a script, ``netns.py forward LISTEN_PORT HOST PORT`` is a loopback forwarder: it accepts
on 127.0.0.1 and connects to HOST:PORT *from* 127.0.0.1, so a node listening only on its veth
address still sees a loopback client (what its local evaluation interface requires).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

__all__ = [
    "IP",
    "Host",
    "Lab",
    "NsClient",
    "NsProcess",
    "lab",
    "pick_subnet",
    "superlink_certificates",
    "unavailable",
    "wait_until",
]

IP: Final = shutil.which("ip") or "/usr/sbin/ip"
NETNS_DIR: Final = Path("/var/run/netns")  # where `ip netns add` pins a namespace
CLONE_NEWNET: Final = 0x40000000
T = TypeVar("T")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _join(namespace: str) -> None:
    """Move the calling thread (only it) into a named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NsClient:
    """A thread inside a network namespace, and an HTTP client whose connections start there.

    Everything runs on the one worker thread, which joined the namespace first: sockets are
    bound to the namespace of the thread that creates them.
    """

    def __init__(self, namespace: str, *, timeout: float = 10.0, **client: Any) -> None:
        """``client`` goes to :class:`httpx.Client` (``base_url``, ``headers``, ...)."""
        self.namespace = namespace
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"in-{namespace}")
        try:
            self._pool.submit(_join, namespace).result()
            self._http = self.call(httpx.Client, timeout=timeout, **client)
        except BaseException:
            self._pool.shutdown(wait=True)
            raise

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.call(self._http.get, url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.call(self._http.post, url, **kwargs)

    def connectable(self, host: str, port: int) -> bool:
        def attempt() -> bool:
            with socket.socket() as sock:
                sock.settimeout(1.0)
                return sock.connect_ex((host, port)) == 0

        return self.call(attempt)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already shut down
            self.call(self._http.close)
        self._pool.shutdown(wait=True)  # the thread ends, and with it its hold on the namespace


def unavailable() -> str | None:
    """Why this machine cannot run the lab (None when it can), found by building a probe for real."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path(IP).exists():
        return "no `ip` command (iproute2)"
    if shutil.which("unshare") is None:
        return "no `unshare` (util-linux), needed to hide the data from the SuperNodes"
    probe = f"coopns-probe-{secrets.token_hex(4)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        for args in (
            ("link", "add", "probe-br", "type", "bridge"),
            ("link", "add", "probe0", "type", "veth", "peer", "name", "probe1"),
        ):
            step = ip("-n", probe, *args, check=False)
            if step.returncode != 0:
                return f"cannot create a {args[-1]} in a namespace: {step.stderr.strip()}"
        try:
            NsClient(probe).close()
        except OSError as exc:
            return f"cannot join a network namespace from a thread: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 address and route the root namespace knows of."""
    used = []
    for args in (("-o", "-4", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for token in ip(*args).stdout.split():
            if "." in token:
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(token, strict=False))
    return used


def pick_subnet(tries: int = 64) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that clashes with nothing on this machine (not that the namespaces would mind)."""
    used = _used_networks()
    for _ in range(tries):
        candidate = ipaddress.IPv4Network(
            f"10.{secrets.choice(range(200, 255))}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError(f"no free 10.x.y.0/24 in {tries} tries")


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    port: str  # its veth's end on the bridge, in the hub namespace


class Lab:
    """Hosts on one bridge: ``Lab(["a", "b", "c"]).create()``, then ``destroy()`` (always)."""

    def __init__(self, names: Sequence[str]) -> None:
        suffix = secrets.token_hex(4)
        self.subnet = pick_subnet()
        addresses = list(self.subnet.hosts())
        self.hub = f"coopns-br-{suffix}"
        self.hub_address = str(addresses[-1])
        self.hosts = {
            name: Host(name, f"coopns-{name}-{suffix}", str(addresses[i]), f"{name}-br")
            for i, name in enumerate(names)
        }
        self.made: list[str] = []

    def create(self) -> Lab:
        hub = self.hub
        ip("netns", "add", hub)
        self.made.append(hub)
        ip("-n", hub, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "addr", "add", f"{self.hub_address}/{self.subnet.prefixlen}", "dev", "br0")
        ip("-n", hub, "link", "set", "br0", "up")
        for host in self.hosts.values():
            ip("netns", "add", host.namespace)
            self.made.append(host.namespace)
            ns = host.namespace
            ip("-n", hub, "link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", hub, "link", "set", host.port, "master", "br0")
            ip("-n", hub, "link", "set", host.port, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def destroy(self) -> None:
        """Delete every namespace made (their veths go with them); keeps going past failures."""
        problems = []
        while self.made:
            namespace = self.made.pop()
            result = ip("netns", "del", namespace, check=False)
            if result.returncode != 0:
                problems.append(f"{namespace}: {result.stderr.strip()}")
        if problems:
            raise RuntimeError("could not delete " + "; ".join(problems))

    def cut(self, name: str) -> None:
        """Take the host's bridge port down: its cable is pulled, the host itself is untouched."""
        ip("-n", self.hub, "link", "set", self.hosts[name].port, "down")

    def heal(self, name: str) -> None:
        ip("-n", self.hub, "link", "set", self.hosts[name].port, "up")

    def exec(self, namespace: str, argv: Sequence[str]) -> list[str]:
        return [IP, "netns", "exec", namespace, *argv]

    def run(
        self, namespace: str, argv: Sequence[str], *, env: dict[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.exec(namespace, argv), capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise AssertionError(
                f"in {namespace}: {' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result


class NsProcess:
    """A long-running process inside a namespace, in its own process group (stop() ends all of it)."""

    def __init__(
        self, lab: Lab, namespace: str, argv: Sequence[str], log: Path, *, env: dict[str, str]
    ) -> None:
        self.command = lab.exec(namespace, argv)
        self.log_path = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path | None = None) -> NsProcess:
        with self.log_path.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=cwd,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # The leader may be gone while a child it started lingers in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until(check: Callable[[], object], what: str, *, within: float, every: float = 0.2) -> None:
    """Poll until ``check()`` is truthy: a bounded wait (count and time), never a timing assertion."""
    deadline = time.monotonic() + within
    last: object = None
    for _ in range(int(within / every) + 1):
        try:
            last = check()
            if last:
                return
        except (httpx.TransportError, KeyError, AssertionError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    raise AssertionError(f"never {what} (within {within:g} s): {last!r}")


def superlink_certificates(folder: Path, addresses: Sequence[str]) -> tuple[Path, Path, Path]:
    """A private CA and a SuperLink certificate valid for these IP addresses: (ca.crt, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(days=1),
    }

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"])
            .not_valid_after(valid["not_valid_after"])
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netns lab CA")])
    ca = (
        certificate("netns lab CA", ca_key, ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    server = (
        certificate(addresses[0], key, ca_name)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


@contextlib.contextmanager
def lab(names: Sequence[str]) -> Iterator[Lab]:
    made = Lab(names)
    try:
        yield made.create()
    finally:
        made.destroy()


# -- the loopback forwarder (run inside a host's namespace) ---------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass


async def _forward(listen_port: int, host: str, port: int) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host, port, local_addr=("127.0.0.1", 0)
            )
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        for writer in (upstream_writer, client_writer):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "forward":
        raise SystemExit("usage: netns.py forward LISTEN_PORT HOST PORT")
    asyncio.run(_forward(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
