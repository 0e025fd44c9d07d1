"""A member's data rights over HTTP and the CLI: access, portability, rectification, erasure.

The node's background pipeline is held off (the test holds its processor lock),
so a contribution stays in the waiting room until a test processes it as an
admin; releases are cut as an admin.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow.parquet as pq
import pytest

from coop.node.releases.revision_statement import verify_revision

from harness import (
    add_member,
    assert_problem,
    bearer,
    chat_text,
    code_word,
    init_node,
    pipeline_held,
    running,
)
from nodeproc import NodeProcess, coop, free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Site:
    root: Path
    process: NodeProcess
    admin: httpx.Client
    public: httpx.Client

    def process_pending(self) -> dict[str, int]:
        response = self.admin.post("/api/v1/admin/process")
        assert response.status_code == 200, response.text
        report: dict[str, int] = response.json()
        return report

    def cut_release(self) -> dict[str, Any]:
        response = self.admin.post("/api/v1/admin/releases")
        assert response.status_code == 201, response.text
        summary: dict[str, Any] = response.json()
        return summary

    def released_uids(self, summary: dict[str, Any]) -> set[str]:
        """Every uid in a release's JSONL files, read over HTTP."""
        uids: set[str] = set()
        for bucket in summary["buckets"]:
            response = self.public.get(f"/releases/{summary['name']}/{bucket['name']}/data.jsonl")
            assert response.status_code == 200, response.text
            uids |= {msgspec.json.decode(line)["uid"] for line in response.content.splitlines() if line}
        return uids

    def tombstones(self, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
        response = self.public.get(f"/releases/{summary['name']}/tombstones.jsonl")
        assert response.status_code == 200, response.text
        items = [msgspec.json.decode(line) for line in response.content.splitlines() if line]
        return {item["uid"]: item for item in items}


@dataclass(frozen=True)
class Member:
    token: str
    http: httpx.Client

    def share(self, word: str, **options: object) -> str:
        body = {"label": "fail", "consent": True, "content": chat_text(word), **options}
        response = self.http.post("/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        uid: str = response.json()["uid"]
        return uid

    def detail(self, uid: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/contributions/{uid}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def state(self, uid: str) -> str:
        state: str = self.detail(uid)["contribution"]["state"]
        return state


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("rights") / "node")
    admin_token = add_member(root, "admin", admin=True)
    with (
        pipeline_held(root),
        running(root) as process,
        httpx.Client(base_url=process.url, headers=bearer(admin_token)) as admin,
        httpx.Client(base_url=process.url) as public,
    ):
        yield Site(root, process, admin, public)


@pytest.fixture
def member(site: Site) -> Iterator[Member]:
    """A member of their own for each test, so that their list holds only what the test made."""
    token = add_member(site.root, f"member-{secrets.token_hex(4)}")
    with httpx.Client(base_url=site.process.url, headers=bearer(token)) as http:
        yield Member(token, http)


# -- access and portability ---------------------------------------------------------


def test_rights_access_lists_each_contribution_with_its_state(site: Site, member: Member) -> None:
    first = member.share(code_word())
    second = member.share(code_word())
    waiting = member.http.get("/api/v1/me/contributions").json()
    assert [(c["uid"], c["state"]) for c in waiting] == [(first, "waiting_room"), (second, "waiting_room")]

    site.process_pending()
    processed = member.http.get("/api/v1/me/contributions").json()
    assert [(c["uid"], c["state"]) for c in processed] == [(first, "accepted"), (second, "accepted")]


def test_rights_export_holds_each_contribution_with_its_text(site: Site, member: Member) -> None:
    words = [code_word() for _ in range(3)]
    uids = [member.share(word) for word in words]
    site.process_pending()
    member.share(extra := code_word())  # one still waiting: exported from its submission
    uids.append(member.http.get("/api/v1/me/contributions").json()[-1]["uid"])
    words.append(extra)

    export = member.http.get("/api/v1/me/contributions.jsonl")
    assert export.status_code == 200, export.text
    lines = [msgspec.json.decode(line) for line in export.content.splitlines()]
    assert [line["contribution"]["uid"] for line in lines] == uids
    for line, word in zip(lines, words, strict=True):
        assert word in msgspec.json.encode(line.get("record") or line.get("submission")).decode()


# -- rectification and erasure before release ------------------------------------------


@pytest.mark.parametrize("processed", [False, True], ids=["in-the-waiting-room", "accepted"])
def test_rights_rectify_before_release_changes_it_in_place_back_to_the_waiting_room(
    site: Site, member: Member, processed: bool
) -> None:
    uid = member.share(code_word(), license="CC-BY-SA-4.0")
    if processed:
        site.process_pending()
        assert member.state(uid) == "accepted"

    response = member.http.patch(
        f"/api/v1/contributions/{uid}",
        json={"label": "good", "license": "CC-BY-4.0", "note": "the total was right after all"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["uid"] == uid
    assert response.json()["replaces"] is None
    assert response.json()["state"] == "waiting_room"
    detail = member.detail(uid)
    assert detail["contribution"]["state"] == "waiting_room"
    assert detail["contribution"]["label"] == "good"
    assert detail["contribution"]["license"] == "CC-BY-4.0"
    assert detail["submission"]["note"] == "the total was right after all"
    assert detail["record"] is None
    assert [c["uid"] for c in member.http.get("/api/v1/me/contributions").json()] == [uid]


def test_rights_withdraw_from_the_waiting_room_erases_at_once(site: Site, member: Member) -> None:
    word = code_word()
    uid = member.share(word)
    assert member.state(uid) == "waiting_room"

    response = member.http.delete(f"/api/v1/contributions/{uid}")

    assert response.status_code == 200, response.text
    assert response.json() == {"uid": uid, "state": "withdrawn"}
    detail = member.detail(uid)
    assert detail["contribution"]["state"] == "withdrawn"
    assert detail["submission"] is None
    assert detail["record"] is None
    assert word not in member.http.get("/api/v1/me/contributions.jsonl").text
    site.process_pending()
    assert member.state(uid) == "withdrawn"


# -- after release: rectification makes a new record, erasure a tombstone --------------


def test_rights_rectify_after_release_supersedes_it_with_a_new_uid(site: Site, member: Member) -> None:
    old = member.share(code_word())
    site.process_pending()
    first = site.cut_release()
    assert member.detail(old)["contribution"]["released_in"] == first["name"]
    assert old in site.released_uids(first)

    response = member.http.patch(f"/api/v1/contributions/{old}", json={"label": "good"})

    assert response.status_code == 200, response.text
    new = response.json()["uid"]
    assert new != old
    assert response.json()["replaces"] == old
    assert response.json()["state"] == "waiting_room"
    before = member.detail(old)
    assert before["contribution"]["state"] == "withdrawn"
    assert before["contribution"]["superseded_by"] == new
    assert before["record"] is None
    assert member.detail(new)["contribution"]["supersedes"] == old
    assert member.detail(new)["contribution"]["label"] == "good"

    site.process_pending()
    second = site.cut_release()
    assert new in site.released_uids(second)
    assert old not in site.released_uids(second)
    assert site.tombstones(second)[old]["reason"] == "rectified"
    assert site.tombstones(second)[old]["replaced_by"] == new


def test_rights_rectify_of_a_superseded_record_is_refused(site: Site, member: Member) -> None:
    old = member.share(code_word())
    site.process_pending()
    site.cut_release()
    new = member.http.patch(f"/api/v1/contributions/{old}", json={"label": "good"}).json()["uid"]

    again = member.http.patch(f"/api/v1/contributions/{old}", json={"note": "one more change"})

    assert_problem(again, 409, "uid")
    assert member.detail(old)["contribution"]["superseded_by"] == new
    assert [c["uid"] for c in member.http.get("/api/v1/me/contributions").json()] == [old, new]


def test_rights_withdraw_after_release_leaves_the_next_release_with_a_tombstone(
    site: Site, member: Member
) -> None:
    uid = member.share(code_word())
    site.process_pending()
    first = site.cut_release()
    assert uid in site.released_uids(first)

    response = member.http.delete(f"/api/v1/contributions/{uid}")

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "withdrawn"
    second = site.cut_release()
    assert uid not in site.released_uids(second)
    assert site.tombstones(second)[uid]["reason"] == "withdrawn"
    assert uid not in site.tombstones(first)


# -- how a release is served ----------------------------------------------------------------


def test_rights_release_bucket_is_served_with_its_content_usage(site: Site, member: Member) -> None:
    # The only CC0 record of this module: the bucket's preference is exactly its own.
    uid = member.share(code_word(), license="CC0-1.0", ai_use="train-ai=n;exceptions=cc-cr, search=y")
    site.process_pending()
    summary = site.cut_release()
    usage = "search=y, train-ai=n;exceptions=cc-cr"
    (cc0,) = [b for b in summary["buckets"] if b["name"] == "cc0"]
    assert cc0["content_usage"] == usage

    for artifact in ("data.jsonl", "data.parquet"):
        response = site.public.get(f"/releases/{summary['name']}/cc0/{artifact}")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Usage"] == usage
    jsonl = site.public.get(f"/releases/{summary['name']}/cc0/data.jsonl")
    assert [msgspec.json.decode(line)["uid"] for line in jsonl.content.splitlines()] == [uid]

    robots = site.public.get("/robots.txt")
    assert robots.status_code == 200
    assert f"Content-Usage: /releases/{summary['name']}/cc0/ {usage}" in robots.text.splitlines()


OUTSIDE_THE_RELEASE = [
    ("dot-dot-to-the-config", "/releases/{v}/../node.toml"),
    ("encoded-dot-dot-to-the-config", "/releases/{v}/%2e%2e/node.toml"),
    ("encoded-slash-to-the-config", "/releases/{v}/..%2fnode.toml"),
    ("salt-under-the-release-name", "/releases/{v}/keys/salt"),
    ("dot-dot-to-the-salt", "/releases/{v}/../../keys/salt"),
    ("absolute-path", "/releases/{v}//etc/passwd"),
    ("database", "/releases/{v}/../../coop.sqlite3"),
]


@pytest.mark.parametrize(("name", "target"), OUTSIDE_THE_RELEASE, ids=[c[0] for c in OUTSIDE_THE_RELEASE])
def test_rights_release_path_outside_the_release_is_refused(site: Site, name: str, target: str) -> None:
    summary = site.cut_release()
    path = target.format(v=summary["name"])
    # Sent as written: httpx would otherwise remove the dot segments itself.
    request = site.public.build_request("GET", path, extensions={"target": path.encode()})

    response = site.public.send(request)

    assert_problem(response, 404)
    assert b"[node]" not in response.content
    assert (site.root / "keys" / "salt").read_bytes() not in response.content
    assert b"SQLite format" not in response.content


# -- the command line ------------------------------------------------------------------------


def test_rights_cli_withdraw_prints_the_uid_withdrawn(site: Site, member: Member) -> None:
    uid = member.share(code_word())

    result = coop("withdraw", uid, "--node", site.process.url, "--token", member.token)

    assert result.returncode == 0
    assert result.stdout == f"{uid} withdrawn\n"
    assert member.state(uid) == "withdrawn"


def test_rights_cli_contribute_twice_stores_one_contribution(
    site: Site, member: Member, tmp_path: Path
) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(chat_text(code_word()), encoding="utf-8")
    args = ("contribute", str(chat), "--node", site.process.url, "--token", member.token)
    args += ("--label", "fail", "--consent", "--license", "CC-BY-4.0")

    first = coop(*args)
    second = coop(*args)

    uid = first.stdout.split()[0]
    assert first.stdout == f"{uid} waiting_room\n"
    assert second.stdout == f"{uid} waiting_room (already shared)\n"
    assert [c["uid"] for c in member.http.get("/api/v1/me/contributions").json()] == [uid]


def test_rights_cli_contribute_after_withdrawing_shares_it_anew(
    site: Site, member: Member, tmp_path: Path
) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(chat_text(code_word()), encoding="utf-8")
    args = ("contribute", str(chat), "--node", site.process.url, "--token", member.token)
    args += ("--label", "fail", "--consent")
    old = coop(*args).stdout.split()[0]
    coop("withdraw", old, "--node", site.process.url, "--token", member.token)

    again = coop(*args)

    # The withdrawn one is erased; sharing the same chat again is a new contribution.
    new = again.stdout.split()[0]
    assert again.stdout == f"{new} waiting_room\n"
    assert new != old
    states = {c["uid"]: c["state"] for c in member.http.get("/api/v1/me/contributions").json()}
    assert states == {old: "withdrawn", new: "waiting_room"}


@dataclass(frozen=True)
class CliScene:
    """What a command line under test can point at."""

    chat: str  # a readable chat file
    remote: tuple[str, ...]  # --node URL --token T of a member
    tmp: Path


def _scene(site: Site, member: Member, tmp_path: Path) -> CliScene:
    chat = tmp_path / "chat.txt"
    chat.write_text(chat_text(code_word()), encoding="utf-8")
    return CliScene(str(chat), ("--node", site.process.url, "--token", member.token), tmp_path)


def _file(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _folder(path: Path) -> str:
    path.mkdir()
    return str(path)


_SHARE = ("--label", "fail", "--consent")

# (name, exit code as documented in coop.node.cli.exits.Exit, the arguments)
CLI_ERRORS: list[tuple[str, int, Callable[[CliScene], tuple[str, ...]]]] = [
    ("contribute-without-consent", 2, lambda s: ("contribute", s.chat, *s.remote, "--label", "fail")),
    ("contribute-missing-file", 2, lambda s: ("contribute", str(s.tmp / "nope.txt"), *s.remote, *_SHARE)),
    (
        "contribute-unrecognised-content",
        2,
        lambda s: ("contribute", _file(s.tmp / "rows.json", b'{"rows": [1]}'), *s.remote, *_SHARE),
    ),
    (
        "contribute-wrong-token",
        5,
        lambda s: ("contribute", s.chat, *s.remote[:2], "--token", "coop_wrong", *_SHARE),
    ),
    (
        "contribute-ai-use-typo",
        2,
        lambda s: ("contribute", s.chat, *s.remote, *_SHARE, "--ai-use", "trian-ai=n"),
    ),
    ("withdraw-missing-uid", 4, lambda s: ("withdraw", "0192f000-0000-7000-8000-000000000000", *s.remote)),
    (
        "contribute-unreachable-node",
        6,
        lambda s: ("contribute", s.chat, "--node", f"http://127.0.0.1:{free_port()}", *s.remote[2:], *_SHARE),
    ),
    ("process-not-a-node", 2, lambda s: ("process", _folder(s.tmp / "not-a-node"))),
    ("process-missing-dir", 2, lambda s: ("process", str(s.tmp / "no-such-dir"))),
    (
        "contribute-url-without-scheme",
        2,
        lambda s: ("contribute", s.chat, "--node", "127.0.0.1:8000", *s.remote[2:], *_SHARE),
    ),
]


@pytest.mark.parametrize(("name", "exit_code", "args"), CLI_ERRORS, ids=[c[0] for c in CLI_ERRORS])
def test_rights_cli_error_is_one_line_on_stderr_and_a_nonzero_exit(
    site: Site,
    member: Member,
    tmp_path: Path,
    name: str,
    exit_code: int,
    args: Callable[[CliScene], tuple[str, ...]],
) -> None:
    result = coop(*args(_scene(site, member, tmp_path)), check=False)

    assert result.returncode == exit_code, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("coop: error: "), result.stderr
    assert result.stdout == ""
    assert member.http.get("/api/v1/me/contributions").json() == []


def test_rights_cli_ai_use_typo_names_the_label_and_suggests_the_known_one(
    site: Site, member: Member, tmp_path: Path
) -> None:
    scene = _scene(site, member, tmp_path)
    result = coop("contribute", scene.chat, *scene.remote, *_SHARE, "--ai-use", "trian-ai=n", check=False)

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "coop: error: unknown AI-use label 'trian-ai': did you mean 'train-ai'? [--ai-use]"
    ]
    assert member.http.get("/api/v1/me/contributions").json() == []


# -- withdrawn content leaves the releases the node serves (issue 10, defect 3) ------------------


def test_rights_withdraw_after_release_removes_it_from_every_served_release_file(
    site: Site, member: Member
) -> None:
    word = code_word()
    uid = member.share(word)
    site.process_pending()
    first = site.cut_release()
    assert uid in site.released_uids(first)

    response = member.http.delete(f"/api/v1/contributions/{uid}")

    assert response.status_code == 200, response.text
    # The node revises the releases it serves right after the commit, in the background.
    # Until then its bucket files are refused (503, Retry-After), never served with the record.
    deadline = time.monotonic() + 30
    summary = site.public.get(f"/releases/{first['name']}").json()
    while summary.get("revision", 1) == first.get("revision", 1) and time.monotonic() < deadline:
        bucket = site.public.get(f"/releases/{first['name']}/{first['buckets'][0]['name']}/data.jsonl")
        assert bucket.status_code in (200, 503) and (
            bucket.status_code == 503 or uid.encode() not in bucket.content
        )
        time.sleep(0.2)
        summary = site.public.get(f"/releases/{first['name']}").json()
    assert uid not in site.released_uids(summary)
    assert summary["name"] == first["name"] and summary["revision"] > first.get("revision", 1)
    base = f"/releases/{summary['name']}"
    # Every served file: no trace of the text; the Parquet has the JSONL's rows; checksums hold.
    for bucket in summary["buckets"]:
        jsonl = site.public.get(f"{base}/{bucket['name']}/data.jsonl").content
        parquet = site.public.get(f"{base}/{bucket['name']}/data.parquet").content
        assert word.encode() not in jsonl
        rows = pq.read_table(io.BytesIO(parquet)).column("uid").to_pylist()
        assert uid not in rows
        assert rows == [msgspec.json.decode(line)["uid"] for line in jsonl.splitlines() if line]
    sums = site.public.get(f"{base}/SHA256SUMS").text.splitlines()
    assert sums
    for line in sums:
        digest, path = line.split("  ", 1)
        served = site.public.get(f"{base}/{path}")
        assert served.status_code == 200, path
        assert hashlib.sha256(served.content).hexdigest() == digest, path
        assert word.encode() not in served.content, path
    # The revision statement, served with the release: signed by the node's key, names the uid.
    key = bytes.fromhex(site.public.get("/api/v1/node").json()["node_id"])
    named = {}
    for number in range(2, summary["revision"] + 1):
        data = site.public.get(f"{base}/revisions/r{number}.dsse.json")
        assert data.status_code == 200
        statement = verify_revision(data.content, key)
        named |= {r.uid: r.reason for r in statement.removed}
    assert named[uid] == "withdrawn by the member"
    # On disk: the folder the node serves holds no trace either, and the old one is gone.
    releases = site.root / "releases"
    folders = [p for p in releases.iterdir() if p.name.split("-r")[0] == summary["name"]]
    assert [p.name for p in folders] == [f"{summary['name']}-r{summary['revision']}"]
    assert all(word.encode() not in p.read_bytes() for p in folders[0].rglob("*") if p.is_file())
