"""The "Share to co-op" Open WebUI action, run against a real node with fake Open WebUI dialogs.

Open WebUI is not installed: the test loads the action file by path, as Open WebUI
would, and plays the member with coroutines that answer ``__event_call__`` dialogs and
record ``__event_emitter__`` events.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest

from coop.governance import pseudonym_hash

from harness import add_member, bearer, code_word, init_node, running, wait_for_state
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration

ACTION_FILE = Path(__file__).resolve().parents[2] / "deploy" / "openwebui" / "share_to_coop.py"
USER_ID = "owui-user-7f3a"
EMAIL = "robin@example.org"
USER = {"id": USER_ID, "name": "Robin", "email": EMAIL, "role": "user"}
MODEL = "llama3.1:8b"
THUMBS_DOWN = {
    "rating": -1,
    "reason": "Incorrect answer",
    "comment": "24 x 17 is 408, not 418.",
    "tags": ["math"],
}


def load_action_module() -> ModuleType:
    """The action file as a module of its own, the way Open WebUI loads a function."""
    spec = importlib.util.spec_from_file_location("share_to_coop", ACTION_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module


share = load_action_module()


@dataclass(frozen=True)
class Site:
    root: Path
    process: NodeProcess
    key: str
    admin: httpx.Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("openwebui-action") / "node")
    key = coop("integration", "add", str(root), "openwebui").stdout.strip()
    admin_token = add_member(root, "admin", admin=True)
    with running(root) as process, httpx.Client(base_url=process.url, headers=bearer(admin_token)) as admin:
        yield Site(root, process, key, admin)


@dataclass
class Member:
    """Answers the action's dialogs in order (False is Cancel) and records what it is shown."""

    answers: list[object]
    asked: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, event: dict[str, Any]) -> object:
        self.asked.append(event)
        return self.answers.pop(0) if self.answers else False

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def notifications(self, kind: str) -> list[str]:
        return [
            e["data"]["content"]
            for e in self.events
            if e["type"] == "notification" and e["data"]["type"] == kind
        ]

    def final_status(self) -> dict[str, Any]:
        statuses = [e["data"] for e in self.events if e["type"] == "status"]
        assert statuses, self.events
        return statuses[-1]


def action_body(word: str, *, annotated: bool = True) -> dict[str, Any]:
    """What Open WebUI passes when the member clicks the button under the last answer."""
    last: dict[str, Any] = {
        "id": "a2",
        "role": "assistant",
        "content": "24 times 17 is 418.",
        "timestamp": 1718294460,
    }
    if annotated:
        last["annotation"] = THUMBS_DOWN
    return {
        "model": MODEL,
        "messages": [
            {"id": "q1", "role": "user", "content": f"Hello! Code word {word}.", "timestamp": 1718294400},
            {"id": "a1", "role": "assistant", "content": "Hello! How can I help?", "timestamp": 1718294410},
            {"id": "q2", "role": "user", "content": "What is 24 times 17?", "timestamp": 1718294450},
            last,
        ],
        "chat_id": f"chat-{word}",
        "session_id": "socket-1",
        "id": "a2",
    }


def new_action(site: Site, **valves: object) -> Any:
    action = share.Action()
    action.valves = share.Action.Valves(**{"node_url": site.process.url, "api_key": site.key, **valves})
    return action


def run(action: Any, body: dict[str, Any], member: Member, user: dict[str, Any] | None = None) -> Any:
    return asyncio.run(
        action.action(
            body,
            __user__=USER if user is None else user,
            __event_emitter__=member.emit,
            __event_call__=member.call,
        )
    )


def shared_record(site: Site, uid: str) -> dict[str, Any]:
    processed = site.admin.post("/api/v1/admin/process")
    assert processed.status_code == 200, processed.text
    detail = wait_for_state(site.admin, uid, {"accepted"})
    record = detail["record"]
    assert isinstance(record, dict), detail
    return record


def stage_counts(site: Site) -> dict[str, int]:
    response = site.admin.get("/api/v1/metrics")
    assert response.status_code == 200, response.text
    counts: dict[str, int] = response.json()["stages"].get("openwebui", {})
    return counts


def contributions_total(site: Site) -> int:
    return sum(site.admin.get("/api/v1/metrics").json()["states"].values())


def test_share_to_coop_stores_the_chat_with_the_members_choices_and_rating(site: Site) -> None:
    word = code_word()
    member = Member([True, "fail", "cc-by-4.0", "408."])
    before = stage_counts(site)

    result = run(new_action(site), action_body(word), member)

    assert result is not None and result["created"] is True
    after = stage_counts(site)
    assert after.get("prompt_shown", 0) == before.get("prompt_shown", 0) + 1, "one prompt, counted once"
    assert after["consent"] == before.get("consent", 0) + 1
    consent, label, licence, correction = member.asked
    assert consent["type"] == "confirmation"
    terms = site.admin.get("/api/v1/node").json()["terms_version"]
    assert f"version {terms}" in consent["data"]["message"]
    assert "withdraw" in consent["data"]["message"]
    assert label["type"] == "input" and label["data"]["value"] == "fail", "the thumbs-down pre-fills fail"
    assert licence["data"]["value"] == "CC-BY-SA-4.0", "the co-op's default licence is offered"
    assert correction["type"] == "input"
    (success,) = member.notifications("success")
    assert result["uid"] in success
    assert member.final_status()["done"] is True
    assert EMAIL not in repr(member.asked) + repr(member.events)

    record = shared_record(site, result["uid"])
    assert record["route"] == "openwebui"
    assert record["label"] == "fail"
    assert record["license"] == "CC-BY-4.0"
    assert record["correction"] == "408."
    assert record["model"] == MODEL
    assert [m["content"] for m in record["content"]] == [m["content"] for m in action_body(word)["messages"]]
    (feedback,) = record["feedback"]
    assert feedback["message_index"] == 3
    assert feedback["rating"] == -1
    assert feedback["reason"] == THUMBS_DOWN["reason"]
    assert feedback["comment"] == THUMBS_DOWN["comment"]
    salt = (site.root / "keys" / "salt").read_bytes()
    member_hash = hmac.new(salt, f"openwebui:{USER_ID}".encode(), hashlib.sha256).hexdigest()
    # Credited by the co-op's default: the member's random pseudonym, with that pseudonym's own hash.
    assert record["attribution"]["mode"] == "pseudonym"
    assert member_hash[:8] not in record["attribution"]["name"]
    assert record["contributor_hash"] == pseudonym_hash(salt, member_hash, record["attribution"]["name"])
    assert EMAIL not in repr(record)


def test_share_to_coop_clicked_twice_shares_once(site: Site) -> None:
    body = action_body(code_word())
    first, second = Member([True, "good", "", ""]), Member([True, "good", "", ""])

    one = run(new_action(site), body, first)
    two = run(new_action(site), body, second)

    assert one["created"] is True
    assert two == {**one, "created": False, "state": two["state"]}
    (again,) = second.notifications("success")
    assert "Already shared" in again and one["uid"] in again


def test_share_to_coop_clicked_again_with_other_choices_is_not_shared_twice(site: Site) -> None:
    body = action_body(code_word())
    assert run(new_action(site), body, Member([True, "good", "", ""])) is not None
    before = contributions_total(site)
    member = Member([True, "good", "", "a different note"])

    assert run(new_action(site), body, member) is None

    (error,) = member.notifications("error")
    assert "already shared" in error
    assert contributions_total(site) == before


CANCELS = [
    ("consent", [False]),
    ("label", [True, False]),
    ("licence", [True, "fail", False]),
    ("correction", [True, "fail", "CC0-1.0", False]),
]


@pytest.mark.parametrize(("dialog", "answers"), CANCELS, ids=[c[0] for c in CANCELS])
def test_share_to_coop_cancelled_dialog_sends_nothing_but_counts_the_prompt(
    site: Site, dialog: str, answers: list[object]
) -> None:
    shown_before = stage_counts(site).get("prompt_shown", 0)
    total_before = contributions_total(site)
    member = Member(list(answers))

    assert run(new_action(site), action_body(code_word()), member) is None

    assert len(member.asked) == len(answers), f"the action stopped at the {dialog} dialog"
    assert member.final_status() == {"description": "Not shared.", "done": True}
    assert not member.notifications("success")
    assert contributions_total(site) == total_before
    assert stage_counts(site)["prompt_shown"] == shown_before + 1


def test_share_to_coop_with_a_wrong_key_shows_the_nodes_problem(site: Site) -> None:
    wrong = "coopkey_not-a-key-of-this-node"
    problem = httpx.post(
        f"{site.process.url}/api/v1/contributions/ingest", json={}, headers=bearer(wrong)
    ).json()
    total_before = contributions_total(site)
    member = Member([True, "fail", "", ""])

    assert run(new_action(site, api_key=wrong), action_body(code_word()), member) is None

    (error,) = member.notifications("error")
    assert problem["detail"] in error
    assert problem["field"] in error
    assert member.final_status()["description"] == "Not shared."
    assert contributions_total(site) == total_before


def test_share_to_coop_with_no_node_answering_asks_nothing(site: Site) -> None:
    member = Member([True, "fail", "", ""])
    action = new_action(site)
    action.valves.node_url = f"http://127.0.0.1:{free_port()}"

    assert run(action, action_body(code_word()), member) is None

    assert member.asked == []
    (error,) = member.notifications("error")
    assert "did not answer" in error


def test_share_to_coop_takes_ratings_from_the_stored_chat_when_the_button_omits_them(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open WebUI's button sends messages without their annotation; the stored chat has it."""
    word = code_word()
    body = action_body(word, annotated=False)
    stored_messages = {m["id"]: {**m, "model": MODEL} for m in action_body(word)["messages"]}
    stored = SimpleNamespace(title="Multiplication", chat={"history": {"messages": stored_messages}})
    lookups: list[tuple[str, str]] = []

    class Chats:
        @staticmethod
        async def get_chat_by_id_and_user_id(chat_id: str, user_id: str) -> SimpleNamespace:
            lookups.append((chat_id, user_id))
            return stored

    modules = {
        name: ModuleType(name) for name in ("open_webui", "open_webui.models", "open_webui.models.chats")
    }
    modules["open_webui.models.chats"].Chats = Chats  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    member = Member([True, "fail", "", ""])

    result = run(new_action(site), body, member)

    assert lookups == [(f"chat-{word}", USER_ID)]
    assert member.asked[1]["data"]["value"] == "fail"
    (feedback,) = shared_record(site, result["uid"])["feedback"]
    assert (feedback["rating"], feedback["reason"]) == (-1, THUMBS_DOWN["reason"])


DIALOG_ANSWERS = [
    ("typed", " CC0-1.0 ", "CC0-1.0"),
    ("confirmed-empty", True, ""),
    ("cancelled", False, None),
    ("closed-without-answer", None, None),
    ("value-wrapper", {"value": "good"}, "good"),
]


@pytest.mark.parametrize(("name", "result", "expected"), DIALOG_ANSWERS, ids=[c[0] for c in DIALOG_ANSWERS])
def test_dialog_answer_reads_what_open_webui_returns(name: str, result: object, expected: str | None) -> None:
    assert share.dialog_answer(result) == expected
