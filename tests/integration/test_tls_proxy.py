"""Behind a real TLS proxy (issue 11, item 2): Debian's nginx in front of the node, with both servers.

nginx terminates TLS on 127.0.0.1 with a self-signed certificate made here,
and connects to the node from 127.0.0.2 (``proxy_bind``): the only address in
``node.trusted_proxies``.  Test clients reach nginx from other loopback
addresses (127.0.0.5, ...), so each is a client of its own, and reach the node
directly from 127.0.0.1, an untrusted peer.  Through the proxy the node sees
what the browser sees (``https://host``: sign-in and forms pass the origin
check, the session cookie is ``Secure``) and each client's own address (rate
limits, the security log); directly, ``X-Forwarded-For`` is nobody's word.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from coop.node.storage.datadir import DataDir

from flower_federation import free_port
from harness import add_member, bearer, chat_text, code_word, init_node
from nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_PEER = "127.0.0.2"  # nginx's address as the node sees it
BURST = 10


@dataclass(frozen=True)
class Proxy:
    url: str
    ca: ssl.SSLContext

    def client(self, source: str, **kwargs: object) -> httpx.Client:
        """A client of its own: connects to nginx (on 127.0.0.1) from the loopback address ``source``."""
        transport = httpx.HTTPTransport(local_address=source, verify=self.ca)
        return httpx.Client(base_url=self.url, transport=transport, timeout=10, **kwargs)  # type: ignore[arg-type]


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA too), made with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "proxy.crt", folder / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _config(folder: Path, port: int, upstream: int, cert: Path, key: Path) -> Path:
    """The documented setup (deploy/OPERATIONS.md), with every file of nginx's in ``folder``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp folder
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = f"""{user}worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log {folder / "access.log"};
{temp}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name 127.0.0.1;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 2m;

        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Connection "";

        location ^~ /api/v1/eval/local {{ return 404; }}
        location / {{
            proxy_bind {PROXY_PEER};
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"""
    path = folder / "nginx.conf"
    path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def nginx(folder: Path, upstream: int) -> Iterator[Proxy]:
    if not Path(NGINX).exists():
        pytest.skip(f"nginx is not installed ({NGINX}): apt-get install nginx-light")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = _certificate(folder)
    port = free_port()
    conf = _config(folder, port, upstream, cert, key)
    command = [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    proxy = Proxy(f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(cert)))
    try:
        deadline = time.monotonic() + 30
        with proxy.client("127.0.0.9") as probe:
            while True:
                assert proc.poll() is None, f"nginx exited: {(folder / 'error.log').read_text()}"
                try:
                    if probe.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "nginx did not answer in 30 s"
                time.sleep(0.1)
        yield proxy
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@dataclass(frozen=True)
class Site:
    root: Path
    node: NodeProcess
    proxy: Proxy
    member: str


@pytest.fixture(params=["granian", "uvicorn"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    root = init_node(
        tmp_path / "node",
        node={"trusted_proxies": [PROXY_PEER]},
        rate_limit={"per_ip_per_minute": 1, "per_ip_burst": BURST},
    )
    member = add_member(root, "robin")
    node = NodeProcess(root, server=request.param).start()
    try:
        with nginx(tmp_path / "nginx", node.port) as proxy:
            yield Site(root, node, proxy, member)
    finally:
        node.stop()


def _cookie(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert found, f"no {name} cookie in {response.headers.get_list('set-cookie')}"
    return found[0]


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, f"no {name} in the page"
    return found.group(1)


def _security_ips(root: Path) -> list[str | None]:
    with closing(sqlite3.connect(f"file:{DataDir(root).db_path}?mode=ro", uri=True)) as conn:
        return [row[0] for row in conn.execute("SELECT ip FROM security_events ORDER BY at, rowid")]


def _share(http: httpx.Client, token: str, **headers: str) -> None:
    body = {"label": "good", "consent": True, "format": "text", "content": chat_text(code_word("proxy"))}
    response = http.post("/api/v1/contributions", json=body, headers={**bearer(token), **headers})
    assert response.status_code == 201, response.text


def test_through_the_tls_proxy_a_browser_signs_in_and_sends_forms_with_a_secure_cookie(site: Site) -> None:
    origin = {"Origin": site.proxy.url, "Accept": "text/html"}
    with site.proxy.client("127.0.0.5") as browser:
        login = browser.get("/login", headers={"Accept": "text/html"})
        assert login.status_code == 200
        assert "secure" in _cookie(login, "coop_login").lower()
        data = {"token": site.member, "next": "/governance", "login_csrf": _hidden(login.text, "login_csrf")}
        signed = browser.post("/login", data=data, headers=origin)
        assert signed.status_code == 303, signed.text[:500]
        session = _cookie(signed, "coop_session").lower()
        assert "secure" in session and "httponly" in session, session

        page = browser.get("/governance", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "robin" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        form = {"csrf": _hidden(page.text, "csrf"), "change": "quality_freeze:on", "reason": "behind TLS"}
        proposed = browser.post("/governance/proposals", data=form, headers=origin)
        assert proposed.status_code == 303, proposed.text[:500]
        assert proposed.headers["location"].startswith("/governance?done=proposed")

        elsewhere = browser.post(
            "/governance/proposals", data=form, headers={**origin, "Origin": "https://evil.example"}
        )
        assert elsewhere.status_code == 403, "another site's form is still refused behind the proxy"


def test_through_the_proxy_each_client_has_its_own_address_and_a_direct_header_is_nobodys(site: Site) -> None:
    with site.proxy.client("127.0.0.6") as first, site.proxy.client("127.0.0.7") as second:
        statuses = [first.get("/healthz").status_code for _ in range(BURST + 1)]
        spoofed = first.get("/healthz", headers={"X-Forwarded-For": "198.51.100.1"})
        other = second.get("/healthz")
        _share(second, site.member)
    assert statuses[:BURST] == [200] * BURST and statuses[BURST] == 429, statuses
    assert spoofed.status_code == 429, "nginx sets X-Forwarded-For: a client cannot pick a new address"
    assert other.status_code == 200, "another client behind the same proxy has its own limit"

    direct = httpx.Client(base_url=site.node.url, timeout=10)
    with direct:
        _share(direct, site.member, **{"X-Forwarded-For": "203.0.113.9"})
    ips = _security_ips(site.root)
    assert ips == ["127.0.0.7", "127.0.0.1"], ips  # the proxied client; the direct peer, not its header
    assert PROXY_PEER not in ips and "203.0.113.9" not in ips
