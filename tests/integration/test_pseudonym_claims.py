"""Pseudonyms cannot pass for another member, over HTTP and the CLI, against a real node process."""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from coop.node.members.attribution import fold

from harness import add_member, assert_problem, bearer, chat_text, code_word, init_node, running
from nodeproc import NodeProcess, coop

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Site:
    root: Path
    process: NodeProcess
    alice: str
    mallory: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("attribution") / "node")
    tokens = add_member(root, "alice"), add_member(root, "mallory")
    with running(root) as process:
        yield Site(root, process, *tokens)


def _share(site: Site, token: str, attribution: str) -> httpx.Response:
    body = {"label": "good", "consent": True, "content": chat_text(code_word()), "attribution": attribution}
    return httpx.post(
        f"{site.process.url}/api/v1/contributions", json=body, headers=bearer(token), timeout=30
    )


@pytest.mark.parametrize(
    "pseudonym",
    [
        pytest.param("alice", id="exact"),
        pytest.param("Alice", id="case-folded"),
        pytest.param("\uff41\uff4c\uff49\uff43\uff45", id="fullwidth-nfkc"),
    ],
)
def test_http_pseudonym_of_another_members_name_is_a_422_naming_attribution(
    site: Site, pseudonym: str
) -> None:
    body = assert_problem(_share(site, site.mallory, f"pseudonym:{pseudonym}"), 422, "attribution")
    assert "another member" in body["detail"]


def test_http_pseudonym_first_come_first_served_and_reusable_by_its_owner(site: Site) -> None:
    name = f"Lantern {code_word()}"
    assert _share(site, site.alice, f"pseudonym:{name}").status_code == 201
    assert _share(site, site.alice, f"pseudonym:{name.upper()}").status_code == 201
    assert_problem(_share(site, site.mallory, f"pseudonym:{name.lower()}"), 422, "attribution")


def test_cli_member_add_with_a_pseudonyms_name_fails_in_one_line(site: Site) -> None:
    name = f"Beacon{code_word()}"
    assert _share(site, site.alice, f"pseudonym:{name}").status_code == 201
    out = coop("member", "add", str(site.root), name.upper(), check=False)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "pseudonym" in out.stderr


def test_cli_contribute_pseudonym_of_another_member_exits_2_with_one_line(site: Site, tmp_path: Path) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(chat_text(code_word()))
    out = coop(
        "contribute",
        str(chat),
        "--node",
        site.process.url,
        "--token",
        site.mallory,
        "--label",
        "good",
        "--consent",
        "--attribution",
        "pseudonym:ALICE",
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1
    assert "attribution" in out.stderr and "another member" in out.stderr


def _ingest_chat(word: str) -> dict[str, object]:
    """A small Open WebUI chat (one question, one answer)."""
    messages = {
        "q": {
            "id": "q",
            "parentId": None,
            "childrenIds": ["a"],
            "role": "user",
            "content": f"Code word {word}?",
        },
        "a": {"id": "a", "parentId": "q", "childrenIds": [], "role": "assistant", "content": "Noted."},
    }
    return {
        "id": f"chat-{word}",
        "title": "Code word",
        "history": {"messages": messages, "currentId": "a"},
        "messages": [messages["q"], messages["a"]],
    }


def test_http_ingest_users_named_like_a_member_get_handles_of_their_own(site: Site) -> None:
    """The Open WebUI route: a client's display name never passes for a member's handle."""
    key = coop("integration", "add", str(site.root), f"webui-{code_word()}").stdout.strip()
    spellings = ["ALICE", "\u0430lice", "a\u200blice", "\u202ealice", "alice\u200f", "\u0000alice", "x\nfake"]
    for n, shown in enumerate(spellings):
        body = {
            "user": {"id": f"spoof-{n}-{code_word()}", "name": shown},
            "label": "good",
            "consent": True,
            "chat": _ingest_chat(code_word()),
            "license": "CC-BY-4.0",
        }
        response = httpx.post(
            f"{site.process.url}/api/v1/contributions/ingest", json=body, headers=bearer(key), timeout=30
        )
        assert response.status_code == 201, response.text
    db = sqlite3.connect(f"file:{site.root / 'coop.sqlite3'}?mode=ro", uri=True)
    try:
        handles = [name for (name,) in db.execute("SELECT name FROM members WHERE provider = 'openwebui'")]
        claims = db.execute("SELECT folded FROM claimed_names WHERE kind = 'member'").fetchall()
    finally:
        db.close()
    assert len(handles) == len(spellings)
    for handle in handles:
        assert handle.isprintable() and handle == handle.strip(), handle
        assert not any(unicodedata.category(c) in ("Cf", "Cc", "Zl", "Zp") for c in handle), handle
        assert fold(handle) != fold("alice"), handle
    assert "x fake" in handles
    assert len(claims) == len(set(claims)), "no two handles fold alike"
