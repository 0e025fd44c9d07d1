"""Chats shared from Open WebUI by an integration: keyed access, and no raw user identity released."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow.parquet as pq
import pytest

from coop.governance import pseudonym_hash

from harness import add_member, assert_problem, bearer, code_word, init_node, running, wait_for_state
from nodeproc import NodeProcess, coop

pytestmark = pytest.mark.integration

USER_ID = "u-123"
EMAIL = "sam@example.org"
USER = {"id": USER_ID, "name": "Sam", "email": EMAIL}


@dataclass(frozen=True)
class Site:
    root: Path
    process: NodeProcess
    key: str
    member_token: str
    admin: httpx.Client
    http: httpx.Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("openwebui") / "node")
    added = coop("integration", "add", str(root), "open-webui")
    key = added.stdout.strip()
    member_token = add_member(root, "alice")
    admin_token = add_member(root, "admin", admin=True)
    with (
        running(root) as process,
        httpx.Client(base_url=process.url, headers=bearer(admin_token)) as admin,
        httpx.Client(base_url=process.url) as http,
    ):
        yield Site(root, process, key, member_token, admin, http)


def openwebui_chat(word: str) -> dict[str, Any]:
    """An Open WebUI chat: a regenerated answer (an abandoned branch) and a rated final answer."""

    def message(mid: str, parent: str | None, children: list[str], role: str, content: str) -> dict[str, Any]:
        return {
            "id": mid,
            "parentId": parent,
            "childrenIds": children,
            "role": role,
            "content": content,
            "timestamp": 1718294400,
            "model": "llama3.1:8b" if role == "assistant" else None,
        }

    messages = {
        "q": message("q", None, ["a1", "a2"], "user", f"What is 24 times 17? Code word {word}."),
        "a1": message("a1", "q", [], "assistant", f"Abandoned answer {word}: it is 400."),
        "a2": message("a2", "q", [], "assistant", "24 times 17 is 418."),
    }
    messages["a2"]["annotation"] = {
        "rating": -1,
        "reason": "Incorrect answer",
        "comment": "24 x 17 is 408, not 418.",
        "tags": ["math"],
    }
    return {
        "id": f"chat-{word}",
        "title": "Multiplication",
        "models": ["llama3.1:8b"],
        "history": {"messages": messages, "currentId": "a2"},
        "messages": [messages["q"], messages["a2"]],
        "tags": [],
        "timestamp": 1718294400000,
    }


def ingest_body(word: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "user": USER,
        "label": "fail",
        "consent": True,
        "chat": openwebui_chat(word),
        "license": "CC-BY-4.0",
    }
    body.update(changes)
    return body


def _release_texts(release: Path) -> dict[str, str]:
    """Every file of a release as text; Parquet files as the JSON of their rows."""
    texts: dict[str, str] = {}
    for path in sorted(p for p in release.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            texts[str(path)] = json.dumps(pq.read_table(path).to_pylist())
        else:
            texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    return texts


def test_openwebui_integration_add_prints_one_api_key(site: Site) -> None:
    assert site.key.startswith("coopkey_")
    assert len(site.key.split()) == 1


def test_openwebui_ingest_releases_the_contributor_hash_and_never_the_user(site: Site) -> None:
    word = code_word()
    created = site.http.post("/api/v1/contributions/ingest", json=ingest_body(word), headers=bearer(site.key))
    assert created.status_code == 201, created.text
    uid = created.json()["uid"]
    wait_for_state(site.admin, uid, {"accepted"})

    released = coop("release", str(site.root))
    name = released.stdout.strip()

    release = site.root / "releases" / name
    lines = (release / "cc-by" / "data.jsonl").read_bytes().splitlines()
    (record,) = [r for r in map(msgspec.json.decode, lines) if r["uid"] == uid]
    salt = (site.root / "keys" / "salt").read_bytes()
    member_hash = hmac.new(salt, f"openwebui:{USER_ID}".encode(), hashlib.sha256).hexdigest()
    # Credited by the co-op's default: the member's random pseudonym, with that pseudonym's own hash.
    assert record["attribution"]["mode"] == "pseudonym"
    assert member_hash[:8] not in record["attribution"]["name"]
    assert record["contributor_hash"] == pseudonym_hash(salt, member_hash, record["attribution"]["name"])
    assert record["route"] == "openwebui"
    assert record["label"] == "fail"
    assert [m["content"] for m in record["content"]] == [
        f"What is 24 times 17? Code word {word}.",
        "24 times 17 is 418.",
    ]
    assert record["feedback"][0]["rating"] == -1
    assert record["feedback"][0]["reason"] == "Incorrect answer"

    texts = _release_texts(release)
    assert any(word in text for text in texts.values()), "the release files are read"
    for path, text in texts.items():
        assert USER_ID not in text, path
        assert EMAIL not in text, path
    log = site.process.log()
    assert USER_ID not in log
    assert EMAIL not in log


CREDENTIALS = [
    ("no-key", {}),
    ("wrong-key", bearer("coopkey_not-a-key-of-this-node")),
    ("member-token", "member"),
    ("key-in-a-basic-header", {"Authorization": "Basic b3BlbndlYnVpOnNlY3JldA=="}),
]


@pytest.mark.parametrize(("name", "credential"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_openwebui_ingest_without_a_valid_key_is_401(
    site: Site, name: str, credential: dict[str, str] | str
) -> None:
    headers = bearer(site.member_token) if credential == "member" else credential
    assert isinstance(headers, dict)
    before = site.admin.get("/api/v1/admin/waiting-room").json()

    response = site.http.post("/api/v1/contributions/ingest", json=ingest_body(code_word()), headers=headers)

    assert_problem(response, 401, "Authorization")
    assert response.headers.get("WWW-Authenticate")
    assert site.admin.get("/api/v1/admin/waiting-room").json() == before


def test_openwebui_key_on_a_member_route_is_401(site: Site) -> None:
    response = site.http.get("/api/v1/me/contributions", headers=bearer(site.key))
    assert_problem(response, 401, "Authorization")


INGEST_REFUSALS = [
    ("user-id-missing", {"user": {"name": "Sam"}}, 422, "user.id"),
    ("user-id-empty", {"user": {"id": "  "}}, 422, "user.id"),
    ("consent-missing", {"consent": False}, 422, "consent"),
    ("chat-unrecognised", {"chat": {"spreadsheet": [1, 2]}}, 422, "chat"),
    ("chat-current-id-dangling", {"chat": {"history": {"currentId": "x", "messages": {}}}}, 422, "chat"),
    ("unknown-field", {"folder": "work"}, 422, "folder"),
    ("aipref-typo-keeps-no-opt-out", {"ai_use": "trian-ai=n"}, 422, "ai_use"),
]


@pytest.mark.parametrize(
    ("name", "changes", "status", "field"), INGEST_REFUSALS, ids=[c[0] for c in INGEST_REFUSALS]
)
def test_openwebui_ingest_refusal_names_the_field_of_the_integrations_body(
    site: Site, name: str, changes: dict[str, object], status: int, field: str
) -> None:
    response = site.http.post(
        "/api/v1/contributions/ingest", json=ingest_body(code_word(), **changes), headers=bearer(site.key)
    )
    problem = assert_problem(response, status)
    assert str(problem.get("field", "")).startswith(field), problem
    assert not str(problem.get("field", "")).startswith("content"), problem


def test_openwebui_ingest_invalid_utf8_in_the_chat_is_400(site: Site) -> None:
    body = msgspec.json.encode({"user": USER, "label": "fail", "consent": True, "chat": "@@"})
    body = body.replace(b'"@@"', b'"User: caf\xe9\\n\\nAssistant: ok"')

    response = site.http.post(
        "/api/v1/contributions/ingest",
        content=body,
        headers={**bearer(site.key), "Content-Type": "application/json"},
    )

    assert_problem(response, 400, "body")


def test_openwebui_refused_ingest_keeps_nothing_about_the_user(site: Site) -> None:
    word = code_word()
    user = {"id": f"u-{word}", "name": "Robin", "email": f"{word}@example.org"}

    response = site.http.post(
        "/api/v1/contributions/ingest",
        json=ingest_body(word, user=user, consent=False),
        headers=bearer(site.key),
    )

    assert_problem(response, 422, "consent")
    # Read-only look into the node's database: the one place the raw id and e-mail could be.
    db = sqlite3.connect(f"file:{site.root / 'coop.sqlite3'}?mode=ro", uri=True)
    try:
        kept = db.execute(
            "SELECT count(*) FROM members WHERE external_id = ? OR email = ?", (user["id"], user["email"])
        ).fetchone()[0]
    finally:
        db.close()
    assert kept == 0, "a user who did not consent was stored with their id and e-mail"
