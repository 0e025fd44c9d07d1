"""Issue 11 item 11, end to end: a serving node reports each background job's last success.

A failing job is exercised in tests/unit/test_scheduler_health.py (fake node, fake clock); here a
real `coop serve` shows the fields in /healthz and /metrics, fresh, with either server.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from harness import init_node
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration

JOBS = {"pipeline", "catalog", "proposals", "retention", "gossip", "revisions"}


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_serving_node_reports_fresh_job_successes(tmp_path: Path, server: str) -> None:
    root = init_node(tmp_path / "a", pipeline={"interval_seconds": 0.2}, federation={"interval_seconds": 0.2})
    node = NodeProcess(root, server=server).start()
    try:
        body: dict[str, object] = {}
        deadline = time.monotonic() + 30  # a bounded wait for the first runs, not a timing check
        while time.monotonic() < deadline:
            body = httpx.get(f"{node.url}/healthz", timeout=5).json()
            jobs = body["jobs"]
            assert isinstance(jobs, dict)
            if set(jobs) == JOBS and all(j["last_success"] is not None for j in jobs.values()):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"not every job succeeded: {body}")
        response = httpx.get(f"{node.url}/healthz", timeout=5)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok" and body["stale"] == []
        for name, job in body["jobs"].items():
            assert job["job"] == name
            assert job["failures"] == 0 and job["consecutive_failures"] == 0, job
            assert 0 <= job["age_seconds"] < job["stale_after_seconds"], job
            assert job["stale"] is False
        metrics = httpx.get(f"{node.url}/metrics", timeout=5).text
        for name in JOBS:
            assert f'coop_job_last_success_age_seconds{{job="{name}"}} ' in metrics
            assert f'coop_job_failures_total{{job="{name}"}} 0' in metrics
            assert f'coop_job_stale{{job="{name}"}} 0' in metrics
        assert "# TYPE coop_job_failures_total counter" in metrics
    finally:
        node.stop()
