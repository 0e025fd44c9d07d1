"""Nothing acknowledged is lost: kill -9 of the server mid-stream, and of the processor mid-batch."""

from __future__ import annotations

import sqlite3
import threading
import time
import tomllib
from pathlib import Path

import httpx
import msgspec
import pytest
import tomli_w

from nodeproc import ENV, NodeProcess, coop

pytestmark = pytest.mark.integration

CLIENTS = 8
MAX_REQUESTS = 4000


def _open_limits(root: Path, **pipeline: object) -> None:
    path = root / "node.toml"
    config = tomllib.loads(path.read_text())
    config["rate_limit"] = {
        "per_ip_per_minute": 10**8,
        "per_ip_burst": 10**6,
        "per_token_per_minute": 10**8,
        "per_token_burst": 10**6,
    }
    config.setdefault("pipeline", {}).update(pipeline)
    path.write_text(tomli_w.dumps(config))


def _body(i: int) -> bytes:
    text = f"User: Question number {i}: how do I file form {i}?\nAssistant: For form {i}, start with box {i % 7}."
    return msgspec.json.encode({"label": "good", "consent": True, "format": "text", "content": text})


def _post(client: httpx.Client, i: int) -> httpx.Response:
    return client.post(
        "/api/v1/contributions",
        content=_body(i),
        headers={"Content-Type": "application/json", "Idempotency-Key": f"key-{i}"},
    )


def test_server_killed_mid_stream_keeps_every_acknowledged_contribution(node_dir: Path) -> None:
    _open_limits(node_dir)
    token = coop("member", "add", str(node_dir), "streamer").stdout.strip()
    node = NodeProcess(node_dir).start()
    acked: dict[int, str] = {}
    attempted: set[int] = set()
    lock = threading.Lock()
    counter = iter(range(MAX_REQUESTS))
    stop = threading.Event()

    def stream() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=node.url, headers=headers, timeout=5.0) as client:
            while not stop.is_set():
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                with lock:
                    attempted.add(i)
                try:
                    response = _post(client, i)
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 201:
                    with lock:
                        acked[i] = response.json()["uid"]

    threads = [threading.Thread(target=stream) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    node.kill9()  # mid-stream: requests are in flight on every client
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acked) >= 300, "the stream never got going"

    node.start()
    try:
        with httpx.Client(
            base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            stored = client.get("/api/v1/me/contributions").json()
            uids = [item["uid"] for item in stored]
            assert len(uids) == len(set(uids))
            assert set(acked.values()) <= set(uids), "an acknowledged contribution was lost"
            # Retrying every request ever sent, with its key, creates nothing new for acknowledged ones
            # and at most one row for each of the others.
            for i in sorted(attempted):
                response = _post(client, i)
                assert response.status_code in (200, 201), response.text
                if i in acked:
                    assert response.status_code == 200
                    assert response.json()["uid"] == acked[i]
            after = [item["uid"] for item in client.get("/api/v1/me/contributions").json()]
        assert len(after) == len(set(after)) == len(attempted)
    finally:
        node.stop()


def _fill_waiting_room(root: Path, count: int) -> None:
    """Many large waiting-room entries, inserted in bulk the way the intake stores them."""
    from coop.governance import Channel
    from coop.node.contributions.repository import insert_contribution
    from coop.node.contributions.submission import ContributionRequest
    from coop.node.ids import uuid7
    from coop.node.runtime import Node

    from factories import make_member

    node = Node(root)
    try:
        member, _ = make_member(node, "bulk")
        filler = " ".join(f"word{j}" for j in range(600))
        requests = []
        for i in range(count):
            text = f"User: Question {i} about {filler}\nAssistant: Answer {i}: {filler}"
            body = msgspec.json.encode({"label": "fail", "consent": True, "format": "text", "content": text})
            requests.append(msgspec.json.decode(body, type=ContributionRequest))
        subs = [node.build_submission(r, channel=Channel.API, member=member)[0] for r in requests]

        def insert_all(conn: sqlite3.Connection) -> None:
            for sub in subs:
                insert_contribution(
                    conn,
                    uid=uuid7(),
                    member=member,
                    submission=sub,
                    now=node.now(),
                    idempotency=None,
                    client=None,
                )

        node.store.write(insert_all)
    finally:
        node.close()


def _states(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM contributions GROUP BY state").fetchall())
    finally:
        conn.close()


def test_processor_killed_mid_batch_rerun_finishes_the_batch(node_dir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    total = 6000
    _fill_waiting_room(node_dir, total)
    db = node_dir / "coop.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "coop.node.cli", "process", str(node_dir)],
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _states(db)
            if seen.get("processing") and seen.get("accepted"):
                os.killpg(proc.pid, signal.SIGKILL)  # a batch is claimed and not yet finished
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert seen.get("processing") and seen.get("accepted"), f"never caught mid-batch: {seen}"

    after_kill = _states(db)
    assert after_kill.get("processing", 0) > 0  # the claimed batch was interrupted
    assert sum(after_kill.values()) == total
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        broken = conn.execute(
            "SELECT count(*) FROM contributions LEFT JOIN contents t USING (seq)"
            " WHERE state = 'accepted' AND (t.record IS NULL OR record_sha256 IS NULL)"
        ).fetchone()[0]
        stale = conn.execute(
            "SELECT count(*) FROM contributions LEFT JOIN contents t USING (seq)"
            " WHERE state IN ('waiting_room', 'processing') AND t.record IS NOT NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    assert broken == 0  # no half-accepted record
    assert stale == 0  # nothing is both waiting and processed

    result = coop("process", str(node_dir), "--json", timeout=300)
    report = msgspec.json.decode(result.stdout)
    final = _states(db)
    assert final.get("waiting_room", 0) == final.get("processing", 0) == 0
    assert final.get("accepted", 0) == total
    assert report["accepted"] == total - after_kill.get("accepted", 0)
