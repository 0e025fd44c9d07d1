"""Behind a reverse proxy: the client address comes from X-Forwarded-For only when the proxy is trusted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from harness import init_node, running
from nodeproc import coop

pytestmark = pytest.mark.integration

LIMITS = {"per_ip_per_minute": 1, "per_ip_burst": 2}


def _statuses(http: httpx.Client, client: str, n: int) -> list[int]:
    return [http.get("/healthz", headers={"X-Forwarded-For": client}).status_code for _ in range(n)]


def test_a_trusted_proxy_gives_each_client_its_own_rate_limit(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", node={"trusted_proxies": ["127.0.0.1"]}, rate_limit=LIMITS)
    with running(root) as process, httpx.Client(base_url=process.url, timeout=10) as http:
        first = _statuses(http, "203.0.113.7", 3)
        second = _statuses(http, "198.51.100.9, 203.0.113.250", 2)  # the right-most untrusted hop counts
        third = _statuses(http, "198.51.100.9", 1)
        # The local evaluation interface never answers what a proxy forwards, even from loopback.
        forwarded = http.get("/api/v1/eval/local/identity", headers={"X-Forwarded-For": "192.0.2.55"})
    assert first == [200, 200, 429]
    assert second == [200, 200]  # 203.0.113.250 is a new client
    assert third == [200]  # 198.51.100.9 was never the client address above
    assert forwarded.status_code == 403
    assert forwarded.json()["field"] == "client"


def test_without_a_trusted_proxy_the_header_is_ignored(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", rate_limit=LIMITS)
    with running(root) as process, httpx.Client(base_url=process.url, timeout=10) as http:
        statuses = [_statuses(http, f"203.0.113.{n}", 1)[0] for n in range(1, 5)]
    # All one client (127.0.0.1, whose readiness checks already used some of the burst): a
    # client cannot pick a fresh address per request.
    assert statuses[-2:] == [429, 429], statuses


def test_healthz_reads_the_database_and_shows_the_switches(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node")
    coop("embargo", "on", str(root))
    with running(root) as process:
        health = httpx.get(f"{process.url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["embargo"] is True and health["quality_freeze"] is False
    assert health["schema"] >= 6


def test_a_trusted_proxy_that_is_not_an_address_stops_serve_with_one_line(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", node={"trusted_proxies": ["proxy.example.org"]})
    done = coop("serve", str(root), "--port", "9", check=False, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("coop: error:")
    assert "trusted_proxies" in done.stderr
