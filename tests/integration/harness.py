"""What the integration tests share: data directories with chosen limits, members, problem checks.

Plain functions only; each test module defines its own fixtures on top of these.
"""

from __future__ import annotations

import secrets
import time
import tomllib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from coop.node.storage.datadir import DataDir

from nodeproc import NodeProcess, coop

__all__ = [
    "PROBLEM_JSON",
    "add_member",
    "assert_problem",
    "bearer",
    "chat_text",
    "code_word",
    "init_node",
    "pipeline_held",
    "running",
    "wait_for_state",
]

PROBLEM_JSON = "application/problem+json"


def init_node(root: Path, **sections: dict[str, Any]) -> Path:
    """A data directory made by the real `coop init`, with `node.toml` sections overridden."""
    coop("init", str(root), "--name", "Test Co-op")
    if sections:
        path = root / "node.toml"
        config = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return root


def add_member(root: Path, name: str, *, admin: bool = False) -> str:
    """A member added by `coop member add`; returns the token it prints."""
    args = ["member", "add", str(root), name] + (["--admin"] if admin else [])
    token = coop(*args).stdout.strip()
    assert token, f"coop member add printed no token for {name}"
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running(root: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(root).start()
    try:
        yield node
    finally:
        node.stop()


@contextmanager
def pipeline_held(root: Path) -> Iterator[None]:
    """Hold the node's processor lock, so its background pipeline never runs.

    States then change only when a test asks (``POST /api/v1/admin/process``),
    which makes "still in the waiting room" something a test can rely on.
    """
    with DataDir(root).lock("processor", purpose="an integration test holding the pipeline"):
        yield


def code_word(topic: str = "word") -> str:
    """A word no other test uses, to find a chat's text again (and to keep chats distinct)."""
    return f"{topic}{secrets.token_hex(6)}"


def chat_text(word: str) -> str:
    """A plain-text chat holding ``word``; distinct words keep the pipeline from dropping duplicates."""
    return (
        f"User: Please remember the code word {word} for our trip.\n\n"
        f"Assistant: Noted: the code word is {word}. I will use it when you ask."
    )


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status (and field, when given); returns its body."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media == PROBLEM_JSON, f"Content-Type {media!r}, body {response.text}"
    body = response.json()
    assert isinstance(body, dict)
    for key in ("type", "title", "detail"):
        assert isinstance(body.get(key), str), f"problem has no {key}: {body}"
        assert body[key], f"problem has an empty {key}: {body}"
    assert body.get("status") == status, body
    if field is not None:
        assert body.get("field") == field, f"expected field {field!r}: {body}"
    return body


def wait_for_state(
    client: httpx.Client, uid: str, states: Collection[str], *, within: float = 30.0
) -> dict[str, Any]:
    """Poll a contribution until its state is one of ``states``; a bounded wait, not a timing check."""
    deadline = time.monotonic() + within
    detail: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/contributions/{uid}")
        assert response.status_code == 200, response.text
        detail = response.json()
        if detail["contribution"]["state"] in states:
            return detail
        time.sleep(0.1)
    raise AssertionError(f"{uid} never reached {sorted(states)}: {detail.get('contribution')}")
