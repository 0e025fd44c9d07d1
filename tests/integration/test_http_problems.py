"""Every refused HTTP request is an RFC 9457 problem that names what to fix, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from harness import (
    add_member,
    assert_problem,
    bearer,
    chat_text,
    code_word,
    init_node,
    running,
    wait_for_state,
)
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration

_OMIT = object()


def contribution(**changes: object) -> dict[str, object]:
    """A valid contribution body with some fields changed (``_OMIT`` removes one)."""
    body: dict[str, object] = {"label": "fail", "consent": True, "content": chat_text(code_word("problem"))}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _OMIT}


def json_bytes(value: object) -> bytes:
    return msgspec.json.encode(value)


@dataclass(frozen=True)
class Refusal:
    """One request the node must refuse, and the problem it must answer with."""

    name: str
    status: int
    field: str | None
    body: bytes | None = None
    method: str = "POST"
    path: str = "/api/v1/contributions"
    content_type: str | None = "application/json"
    credential: str = "member"  # member, none, wrong or malformed
    headers: dict[str, str] = field(default_factory=dict)
    field_prefix: bool = False  # the field starts with ``field`` (a path into the content)
    detail_has: str | None = None
    response_headers: tuple[str, ...] = ()

    def send(self, client: httpx.Client, token: str) -> httpx.Response:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        credentials = {
            "member": bearer(token),
            "none": {},
            "wrong": bearer("coop_not-a-token-of-this-node"),
            "malformed": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        }
        headers.update(credentials[self.credential])
        return client.request(self.method, self.path, content=self.body, headers=headers)

    def check(self, response: httpx.Response) -> dict[str, Any]:
        problem = assert_problem(response, self.status, None if self.field_prefix else self.field)
        if self.field_prefix:
            assert self.field is not None
            assert str(problem.get("field", "")).startswith(self.field), problem
        if self.detail_has is not None:
            assert self.detail_has in problem["detail"], problem
        for name in self.response_headers:
            assert response.headers.get(name), f"no {name} header on {response.status_code}"
        return problem


_NESTED = b"[" * 5000 + b"]" * 5000

REFUSALS = [
    Refusal("unknown-licence", 422, "license", json_bytes(contribution(license="MIT"))),
    Refusal(
        "aipref-syntax-error-names-the-position",
        422,
        "ai_use",
        json_bytes(contribution(ai_use="train-ai=y,, search=n")),
        detail_has="character 12",
    ),
    Refusal(
        "aipref-known-label-bad-value",
        422,
        "ai_use.train-ai",
        json_bytes(contribution(ai_use="train-ai=maybe")),
    ),
    Refusal(
        "aipref-typo-in-own-label-suggests-the-known-one",
        422,
        "ai_use",
        json_bytes(contribution(ai_use="trian-ai=n")),
        detail_has="unknown AI-use label 'trian-ai': did you mean 'train-ai'?",
    ),
    Refusal(
        "aipref-typo-in-own-parameter-suggests-the-known-one",
        422,
        "ai_use.train-ai",
        json_bytes(contribution(ai_use="train-ai=n;exeptions=cc-cr")),
        detail_has="did you mean 'exceptions'?",
    ),
    Refusal("consent-missing", 422, "consent", json_bytes(contribution(consent=_OMIT))),
    Refusal("consent-false", 422, "consent", json_bytes(contribution(consent=False))),
    Refusal(
        "terms-version-mismatch", 422, "terms_version", json_bytes(contribution(terms_version="1999-01"))
    ),
    Refusal(
        "content-unrecognised-json-object",
        422,
        "content",
        json_bytes(contribution(content={"spreadsheet": [1, 2, 3]})),
        field_prefix=True,
    ),
    Refusal(
        "content-array-of-numbers",
        422,
        "content",
        json_bytes(contribution(content=[1, 2, 3])),
        field_prefix=True,
    ),
    Refusal(
        "content-broken-export-json",
        422,
        "content",
        json_bytes(contribution(content='{"chat": {"history": {"messages": ')),
        field_prefix=True,
    ),
    Refusal(
        "content-export-current-id-missing",
        422,
        "content",
        json_bytes(
            contribution(
                content={
                    "chat": {
                        "history": {
                            "currentId": "nope",
                            "messages": {"a": {"id": "a", "role": "user", "content": "hi"}},
                        }
                    }
                }
            )
        ),
        field_prefix=True,
    ),
    Refusal(
        "wrong-content-type",
        415,
        "Content-Type",
        json_bytes(contribution()),
        content_type="text/plain",
    ),
    Refusal("no-content-type", 415, "Content-Type", json_bytes(contribution()), content_type=None),
    Refusal("invalid-utf8-in-a-field", 400, "body", b'{"label": "f\xe9il", "consent": true}'),
    Refusal(
        "invalid-utf8-in-text-content",
        400,
        "body",
        b'{"label": "fail", "consent": true, "content": "User: caf\xe9\\n\\nAssistant: ok"}',
    ),
    Refusal(
        "invalid-utf8-in-json-content",
        400,
        "body",
        b'{"label": "fail", "consent": true, "content": {"messages": [{"role": "user", "content": "caf\xe9"}]}}',
    ),
    Refusal("broken-json-body", 400, "body", b'{"label": "fail", "consent": tr'),
    Refusal(
        "json-nested-too-deep",
        400,
        "body",
        b'{"label": "fail", "consent": true, "content": ' + _NESTED + b"}",
    ),
    Refusal("unknown-field", 422, "colour", json_bytes(contribution(colour="red"))),
    Refusal("wrong-type-label", 422, "label", json_bytes(contribution(label=1))),
    Refusal("unknown-label", 422, "label", json_bytes(contribution(label="meh"))),
    Refusal("unknown-scope", 422, "scope", json_bytes(contribution(scope="everywhere"))),
    Refusal("unknown-eval-consent", 422, "eval", json_bytes(contribution(eval="maybe")), detail_has="y, n"),
    Refusal("malformed-attribution", 422, "attribution", json_bytes(contribution(attribution="me"))),
    Refusal("unknown-channel", 422, "channel", json_bytes(contribution(channel="fax"))),
    Refusal("bad-tag", 422, "tags[1]", json_bytes(contribution(tags=["ok", "<script>"]))),
    Refusal("bad-language", 422, "language", json_bytes(contribution(language="english!"))),
    Refusal(
        "openwebui-channel-on-the-member-route",
        422,
        "channel",
        json_bytes(contribution(channel="openwebui")),
    ),
    Refusal(
        "idempotency-key-too-long",
        422,
        "Idempotency-Key",
        json_bytes(contribution()),
        headers={"Idempotency-Key": "k" * 201},
    ),
    Refusal(
        "token-missing",
        401,
        "Authorization",
        json_bytes(contribution()),
        credential="none",
        response_headers=("WWW-Authenticate",),
    ),
    Refusal(
        "token-wrong",
        401,
        "Authorization",
        json_bytes(contribution()),
        credential="wrong",
        response_headers=("WWW-Authenticate",),
    ),
    Refusal(
        "authorization-not-bearer",
        401,
        "Authorization",
        json_bytes(contribution()),
        credential="malformed",
        response_headers=("WWW-Authenticate",),
    ),
    Refusal("unknown-route", 404, None, None, method="GET", path="/api/v1/nowhere", content_type=None),
    Refusal(
        "wrong-method",
        405,
        None,
        json_bytes(contribution()),
        method="PUT",
        response_headers=("Allow",),
    ),
    Refusal(
        "edit-of-a-missing-uid",
        404,
        "uid",
        json_bytes({"label": "good"}),
        method="PATCH",
        path="/api/v1/contributions/0192f000-0000-7000-8000-000000000000",
    ),
]


def _messages(n: int) -> dict[str, object]:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]
    return {"messages": turns}


def _history(n: int) -> dict[str, object]:
    messages = {
        f"m{i}": {
            "id": f"m{i}",
            "parentId": f"m{i - 1}" if i else None,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"turn {i}",
        }
        for i in range(n)
    }
    return {"chat": {"history": {"currentId": f"m{n - 1}", "messages": messages}}}


SMALL_LIMITS = {"max_body_bytes": 4096, "max_messages": 3}

LIMIT_REFUSALS = [
    Refusal(
        "body-over-the-size-limit",
        413,
        "body",
        json_bytes(contribution(content="User: hello\n\nAssistant: " + "long answer " * 600)),
    ),
    Refusal(
        "too-many-structured-messages",
        413,
        "content.messages",
        json_bytes(contribution(content=_messages(6))),
    ),
    Refusal(
        "too-many-text-turns",
        413,
        "content",
        json_bytes(contribution(content="User: a\n\nAssistant: b\n\nUser: c\n\nAssistant: d")),
    ),
    Refusal(
        "too-many-messages-in-an-export-branch",
        413,
        "content",
        json_bytes(contribution(content=_history(6))),
        field_prefix=True,
    ),
]

EDIT_REFUSALS = [
    ("nothing-to-change", {}, "body"),
    ("unknown-licence", {"license": "GPL-3.0"}, "license"),
    ("unknown-scope", {"scope": "everywhere"}, "scope"),
    ("unknown-label", {"label": "meh"}, "label"),
    ("unknown-field", {"content": "new text"}, "content"),
    ("aipref-bad-value", {"ai_use": "search=perhaps"}, "ai_use.search"),
    ("aipref-typo", {"ai_use": "serach=n"}, "ai_use"),
    ("bad-language", {"language": "x"}, "language"),
]


@dataclass(frozen=True)
class Site:
    """A running node with the member whose requests are refused and one who edits."""

    process: NodeProcess
    refused: str
    editor: str


def _site(root: Path) -> Iterator[Site]:
    refused = add_member(root, "refused")
    editor = add_member(root, "editor")
    with running(root) as process:
        yield Site(process, refused, editor)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(init_node(tmp_path_factory.mktemp("problems") / "node"))


@pytest.fixture(scope="module")
def small_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(init_node(tmp_path_factory.mktemp("limits") / "node", limits=SMALL_LIMITS))


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.process.url) as http:
        yield http


@pytest.fixture(scope="module")
def edited(site: Site, client: httpx.Client) -> str:
    """The editor's contribution, processed, so that its state no longer moves by itself."""
    created = client.post("/api/v1/contributions", json=contribution(), headers=bearer(site.editor))
    assert created.status_code == 201, created.text
    uid: str = created.json()["uid"]
    with httpx.Client(base_url=site.process.url, headers=bearer(site.editor)) as editor:
        wait_for_state(editor, uid, {"accepted"})
    return uid


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
def test_http_refused_request_answers_a_problem_naming_the_field(
    site: Site, client: httpx.Client, case: Refusal
) -> None:
    case.check(case.send(client, site.refused))


@pytest.mark.parametrize("case", LIMIT_REFUSALS, ids=lambda c: c.name)
def test_http_request_over_a_limit_answers_413_naming_the_field(small_site: Site, case: Refusal) -> None:
    with httpx.Client(base_url=small_site.process.url) as http:
        case.check(case.send(http, small_site.refused))


def test_http_wrong_method_lists_the_allowed_ones(site: Site, client: httpx.Client) -> None:
    response = client.put("/api/v1/contributions", headers=bearer(site.refused))
    assert_problem(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "POST" in allowed
    assert "PUT" not in allowed


@pytest.mark.parametrize(("name", "body", "field_name"), EDIT_REFUSALS, ids=[c[0] for c in EDIT_REFUSALS])
def test_http_refused_edit_names_the_field_and_changes_nothing(
    site: Site, client: httpx.Client, edited: str, name: str, body: dict[str, object], field_name: str
) -> None:
    headers = bearer(site.editor)
    before = client.get(f"/api/v1/contributions/{edited}", headers=headers).json()
    response = client.patch(f"/api/v1/contributions/{edited}", json=body, headers=headers)
    assert_problem(response, 422, field_name)
    assert client.get(f"/api/v1/contributions/{edited}", headers=headers).json() == before


def test_http_idempotency_key_reused_for_another_body_is_409_and_stores_nothing(
    site: Site, client: httpx.Client
) -> None:
    headers = {
        **bearer(site.editor),
        "Content-Type": "application/json",
        "Idempotency-Key": code_word("key-"),
    }
    body = json_bytes(contribution())
    before = len(client.get("/api/v1/me/contributions", headers=headers).json())

    first = client.post("/api/v1/contributions", content=body, headers=headers)
    retried = client.post("/api/v1/contributions", content=body, headers=headers)
    other = client.post("/api/v1/contributions", content=json_bytes(contribution()), headers=headers)

    assert first.status_code == 201, first.text
    assert retried.status_code == 200, retried.text
    assert retried.json()["uid"] == first.json()["uid"]
    assert retried.json()["created"] is False
    assert_problem(other, 409, "Idempotency-Key")
    assert len(client.get("/api/v1/me/contributions", headers=headers).json()) == before + 1


def test_http_requests_over_the_ip_limit_answer_429_with_retry_after(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", rate_limit={"per_ip_per_minute": 1, "per_ip_burst": 3})
    with running(root) as process, httpx.Client(base_url=process.url) as http:
        responses = [http.get("/healthz") for _ in range(6)]
    statuses = [r.status_code for r in responses]
    assert 429 in statuses, statuses
    first = statuses.index(429)
    assert statuses[first:] == [429] * (len(statuses) - first), "a refill of 1 a minute cannot lift it"
    assert_problem(responses[first], 429)
    assert int(responses[first].headers["Retry-After"]) >= 1


def test_http_requests_over_the_token_limit_answer_429_for_that_token_only(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node", rate_limit={"per_token_per_minute": 1, "per_token_burst": 2})
    busy = add_member(root, "busy")
    quiet = add_member(root, "quiet")
    with running(root) as process, httpx.Client(base_url=process.url) as http:
        responses = [http.get("/api/v1/me", headers=bearer(busy)) for _ in range(4)]
        other = http.get("/api/v1/me", headers=bearer(quiet))
    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    assert_problem(responses[2], 429)
    assert int(responses[2].headers["Retry-After"]) >= 1
    assert other.status_code == 200, other.text


def test_http_refused_requests_leave_the_members_contributions_unchanged(
    site: Site, small_site: Site
) -> None:
    # Replays every refusal, so the check holds whichever tests ran before it.
    for where, cases in ((site, REFUSALS), (small_site, LIMIT_REFUSALS)):
        mine = bearer(where.refused)
        with httpx.Client(base_url=where.process.url) as http:
            for case in cases:
                assert case.send(http, where.refused).status_code >= 400, case.name
            assert http.get("/api/v1/me/contributions", headers=mine).json() == []
            assert http.get("/api/v1/me/contributions.jsonl", headers=mine).content == b""
            # The list does show what gets stored: one valid contribution appears in it.
            stored = http.post("/api/v1/contributions", json=contribution(), headers=mine)
            assert stored.status_code == 201, stored.text
            listed = [item["uid"] for item in http.get("/api/v1/me/contributions", headers=mine).json()]
            assert listed == [stored.json()["uid"]]
