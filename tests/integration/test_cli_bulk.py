"""The member's command line against a real node: a bulk Open WebUI export through a low rate
limit, a safe rerun, --chat-id on NDJSON, login, mine, correct, member list."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import add_member, code_word, init_node
from nodeproc import ENV, NodeProcess, coop

pytestmark = pytest.mark.integration

CHATS = 40


@dataclass(frozen=True)
class Scene:
    root: Path
    url: str
    token_file: Path
    export: Path
    tmp: Path


def _chat(n: int) -> dict[str, Any]:
    word = code_word(f"bulk{n}")
    messages = {
        "q": {"id": "q", "parentId": None, "childrenIds": ["a"], "role": "user",
              "content": f"Question {n}: what is {word}?"},
        "a": {"id": "a", "parentId": "q", "childrenIds": [], "role": "assistant",
              "content": f"{word} is the code word of chat {n}."},
    }  # fmt: skip
    return {
        "id": f"chat-{n}",
        "title": f"Chat number {n}",
        "chat": {"title": f"Chat number {n}", "history": {"currentId": "a", "messages": messages}},
    }


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("bulk")
    # A burst of 3 and 10 a second per token: 40 chats meet 429 (Retry-After: 1) several times.
    root = init_node(tmp / "node", rate_limit={"per_token_per_minute": 600, "per_token_burst": 3})
    token_file = tmp / "token"
    token_file.write_text(add_member(root, "ada") + "\n", encoding="utf-8")
    empty = {"id": "empty", "title": "nothing", "chat": {"history": {"currentId": None, "messages": {}}}}
    export = tmp / "export.jsonl"
    lines = [json.dumps(_chat(n)) for n in range(CHATS)] + [json.dumps(empty)]
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    node = NodeProcess(root).start()
    try:
        yield Scene(root, node.url, token_file, export, tmp)
    finally:
        node.stop()


def _run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coop.node.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=300,
        check=False,
    )


_SHARE = ("--label", "good", "--consent")


def test_bulk_export_through_a_low_rate_limit_then_a_rerun_is_all_duplicates(scene: Scene) -> None:
    first = _run("contribute", str(scene.export), "--node", scene.url, "--token-file", str(scene.token_file),
                 *_SHARE, "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    items = json.loads(first.stdout)
    assert len(items) == CHATS  # the chat without messages is left out
    assert all(item["created"] for item in items)
    assert len({item["uid"] for item in items}) == CHATS
    assert [item["chat_id"] for item in items] == [f"chat-{n}" for n in range(CHATS)]

    token = scene.token_file.read_text(encoding="utf-8").strip()
    again = _run("contribute", str(scene.export), "--node", scene.url, *_SHARE, env={"COOP_TOKEN": token})
    assert again.returncode == 0, again.stderr
    summary = f"{CHATS + 1} chats: 0 new, {CHATS} duplicate, 0 refused, 1 skipped: no messages"
    assert again.stderr.splitlines()[-1] == summary
    shown = again.stdout.splitlines()
    assert len(shown) == CHATS and all(line.endswith("(already shared)") for line in shown)
    assert {line.split()[0] for line in shown} == {item["uid"] for item in items}


def test_chat_ids_of_an_ndjson_export_pick_those_chats(scene: Scene) -> None:
    picked = _run("contribute", str(scene.export), "--node", scene.url, "--token-file", str(scene.token_file),
                  *_SHARE, "--chat-id", "chat-3", "--chat-id", "chat-5", "--json")  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    assert [item["chat_id"] for item in json.loads(picked.stdout)] == ["chat-3", "chat-5"]

    unknown = _run("contribute", str(scene.export), "--node", scene.url, "--token-file", str(scene.token_file),
                   *_SHARE, "--chat-id", "chat-99")  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("coop: error: no chat with id chat-99")


def test_login_keeps_the_token_private_and_member_commands_use_it(scene: Scene) -> None:
    env = {"XDG_CONFIG_HOME": str(scene.tmp / "config")}
    token = scene.token_file.read_text(encoding="utf-8")
    login = _run("login", scene.url, env=env, stdin=token)
    assert login.returncode == 0, login.stderr
    assert "as ada" in login.stdout
    stored = scene.tmp / "config" / "coop" / "credentials.toml"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600

    mine = _run("mine", "--node", scene.url, env=env)
    assert mine.returncode == 0, mine.stderr
    assert len(mine.stdout.splitlines()) >= CHATS
    assert token.strip() not in mine.stdout

    wrong = _run("login", scene.url, env=env, stdin="coop_not-a-token\n")
    assert wrong.returncode == 5
    assert "coop_not-a-token" not in stored.read_text(encoding="utf-8")


def test_correct_patches_the_members_own_contribution(scene: Scene) -> None:
    mine = _run("mine", "--node", scene.url, "--token-file", str(scene.token_file), "--json")
    uid = json.loads(mine.stdout)[0]["uid"]
    fix = scene.tmp / "fix.txt"
    fix.write_text("The code word is secret.", encoding="utf-8")

    done = _run(
        "correct", uid, "--node", scene.url, "--token-file", str(scene.token_file), "--file", str(fix)
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] in {uid} | {line.split()[0] for line in done.stdout.splitlines()}
    nothing = _run("correct", uid, "--node", scene.url, "--token-file", str(scene.token_file))
    assert nothing.returncode == 2


def test_member_list_shows_members_and_never_a_token(scene: Scene) -> None:
    listed = coop("member", "list", str(scene.root), "--json")
    members = json.loads(listed.stdout)
    assert [(m["name"], m["role"], m["tokens"]) for m in members] == [("ada", "member", 1)]
    token = scene.token_file.read_text(encoding="utf-8").strip()
    assert token not in listed.stdout
    assert token not in coop("member", "list", str(scene.root)).stdout
