"""Record-generation metrics over HTTP and CLI; retention report and the automatic purge."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from nodeproc import NodeProcess, coop

pytestmark = pytest.mark.integration


def _share(client: httpx.Client, text: str, **extra: object) -> str:
    body = {"label": "good", "consent": True, "format": "text", "content": text, **extra}
    response = client.post("/api/v1/contributions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["uid"])


def test_metrics_count_each_stage_per_channel(node_dir: Path) -> None:
    admin = coop("member", "add", str(node_dir), "ada", "--admin").stdout.strip()
    key = coop("integration", "add", str(node_dir), "owui").stdout.strip()
    node = NodeProcess(node_dir).start()
    try:
        with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {admin}"}) as client:
            for i in range(3):
                _share(client, f"User: question {i}?\nAssistant: answer {i}.")
            _share(client, "User: from the cli?\nAssistant: yes.", channel="cli")
            emails = " ".join(f"x{i}@example.com" for i in range(6))
            _share(client, f"User: {emails}\nAssistant: ok")  # quarantined: consent but no transform
            assert client.post("/api/v1/admin/process").status_code == 200
            assert client.post("/api/v1/admin/releases").status_code == 201
            events = client.post(
                "/api/v1/metrics/events",
                json={"channel": "openwebui", "stage": "eligible", "count": 40},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert events.status_code == 202
            text = client.get("/metrics").text
        assert 'coop_stage_total{channel="api",stage="captured"} 4' in text
        assert 'coop_stage_total{channel="api",stage="consent"} 4' in text
        assert 'coop_stage_total{channel="api",stage="transform_ok"} 3' in text
        assert 'coop_stage_total{channel="api",stage="published"} 3' in text
        assert 'coop_stage_total{channel="cli",stage="published"} 1' in text
        assert 'coop_stage_total{channel="openwebui",stage="eligible"} 40' in text
        assert 'coop_stage_yield{channel="api",from="consent",to="transform_ok"} 0.75' in text
        assert 'coop_published_window{channel="api",window="7d"} 3' in text
        assert 'coop_contributions{state="quarantined"} 1' in text
        report = msgspec.json.decode(coop("metrics", str(node_dir), "--json").stdout)
        assert report["stages"]["api"]["published"] == 3
        assert report["published"]["cli"]["1d"] == 1
        assert report["releases"] == 1
    finally:
        node.stop()


def test_metrics_event_with_unknown_stage_names_field(running_node: NodeProcess) -> None:
    key = coop("integration", "add", str(running_node.root), "owui").stdout.strip()
    response = httpx.post(
        f"{running_node.url}/api/v1/metrics/events",
        json={"channel": "openwebui", "stage": "published", "count": 1},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "stage"


def test_retention_purges_security_data_older_than_the_period(node_dir: Path) -> None:
    token = coop("member", "add", str(node_dir), "ben").stdout.strip()
    node = NodeProcess(node_dir).start()
    try:
        with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as client:
            _share(client, "User: hi?\nAssistant: hello.")
    finally:
        node.stop()
    db = node_dir / "coop.sqlite3"
    old = int(time.time()) - 8 * 86_400
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO security_events (at, ip, user_agent, member_id, action) VALUES (?, '203.0.113.9', 'old', 1, 'contribute')",
            (old,),
        )
        conn.commit()
    finally:
        conn.close()

    held = msgspec.json.decode(coop("retention", str(node_dir), "--json").stdout)["held"]
    security = next(item for item in held if item["category"].startswith("security data"))
    assert security["count"] == 2
    assert security["until"] == old + 7 * 86_400  # the oldest goes 7 days after it was recorded

    purged = msgspec.json.decode(coop("retention", str(node_dir), "--purge", "--json").stdout)
    assert purged["purged"]["security_events"] == 1
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT ip FROM security_events").fetchall()
    finally:
        conn.close()
    assert rows == [("127.0.0.1",)]  # the recent one stays: it is still within the period


def test_retention_report_names_every_category(node_dir: Path) -> None:
    out = coop("retention", str(node_dir)).stdout
    for category in ("security data", "waiting_room", "quarantined", "released", "tombstones"):
        assert category in out


def test_serving_node_purges_expired_security_data_by_itself(node_dir: Path) -> None:
    db = node_dir / "coop.sqlite3"
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO security_events (at, ip, user_agent, member_id, action) VALUES (?, '198.51.100.7', 'old', NULL, 'contribute')",
            (int(time.time()) - 30 * 86_400,),
        )
        conn.commit()
    finally:
        conn.close()
    node = NodeProcess(node_dir).start()
    try:
        remaining = None
        for _ in range(100):  # bounded: at most ~10 s
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                remaining = conn.execute("SELECT count(*) FROM security_events").fetchone()[0]
            finally:
                conn.close()
            if remaining == 0:
                break
            time.sleep(0.1)
        assert remaining == 0
    finally:
        node.stop()
