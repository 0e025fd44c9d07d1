"""Every file the node serves answers download tools as they expect, behind either server.

HEAD (the same headers as GET, no body), ``Accept-Ranges: bytes``, one ``Range`` as 206 with
``Content-Range`` (a resumed download joins into the file's exact bytes), 416 with
``bytes */size``, a strong ``ETag`` with ``If-None-Match`` as 304, ``If-Range`` against a
stale tag as the whole file, and the release headers (``Content-Usage``) kept on all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness import add_member, bearer, code_word, init_node, pipeline_held
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration

_WORDS = ["river", "stone", "lantern", "orchard", "meadow", "harbour", "violet", "thunder", "quiet", "amber"]


def _long_chat(word: str, size: int) -> str:
    body = " ".join(_WORDS[i % len(_WORDS)] for i in range(size // 7))
    return f"User: Tell me a long story about {word}.\nAssistant: {word} {body} {word}."


@dataclass(frozen=True)
class Served:
    url: str
    server: str
    member: httpx.Client
    public: httpx.Client
    release: dict[str, Any]

    def path_of(self, suffix: str) -> str:
        name = next(f["path"] for f in self.release["files"] if f["path"].endswith(suffix))
        return f"/releases/{self.release['name']}/{name}"


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server: str = request.param
    root = init_node(tmp_path_factory.mktemp(f"files-{server}") / "node")
    admin_token = add_member(root, "admin", admin=True)
    member_token = add_member(root, "sam")
    process = NodeProcess(root, server=server)
    with pipeline_held(root):
        process.start()
        try:
            with (
                httpx.Client(base_url=process.url, headers=bearer(admin_token), timeout=60) as admin,
                httpx.Client(base_url=process.url, headers=bearer(member_token), timeout=60) as member,
                httpx.Client(base_url=process.url, timeout=60) as public,
            ):
                for _ in range(6):  # ~0.5 MB of JSONL: more than one 256 KiB chunk
                    body = {
                        "label": "good",
                        "consent": True,
                        "license": "CC-BY-4.0",
                        "content": _long_chat(code_word("story"), 90_000),
                    }
                    assert member.post("/api/v1/contributions", json=body).status_code == 201
                assert admin.post("/api/v1/admin/process").status_code == 200
                cut = admin.post("/api/v1/admin/releases")
                assert cut.status_code == 201, cut.text
                yield Served(process.url, server, member, public, cut.json())
        finally:
            process.stop()


def _same_headers(get: httpx.Response, head: httpx.Response) -> None:
    for name in ("content-type", "content-length", "etag", "accept-ranges", "content-usage", "last-modified"):
        assert head.headers.get(name) == get.headers.get(name), name


def test_downloads_head_answers_the_get_headers_without_a_body(served: Served) -> None:
    data = served.path_of("data.jsonl")
    paths = [data, served.path_of("croissant.json"), f"/releases/{served.release['name']}/SHA256SUMS"]
    paths += [f"/releases/{served.release['name']}/release.dsse.json", "/static/app.css"]
    for path in paths:
        get = served.public.get(path)
        head = served.public.head(path)
        assert get.status_code == 200 and head.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        assert get.headers["accept-ranges"] == "bytes", path
        assert get.headers["etag"].startswith('"'), f"{path}: a strong ETag"
        _same_headers(get, head)
    assert served.public.head(data).headers.get("content-usage"), "a bucket's file keeps its Content-Usage"


def test_downloads_range_resumes_a_partial_download_into_the_exact_file(served: Served) -> None:
    path = served.path_of("data.jsonl")
    whole = served.public.get(path)
    size = int(whole.headers["content-length"])
    assert size > 300_000, "the file spans several chunks"
    partial = whole.content[: size // 3]  # as if the connection broke here
    resumed = served.public.get(
        path, headers={"Range": f"bytes={len(partial)}-", "If-Range": whole.headers["etag"]}
    )
    assert resumed.status_code == 206
    assert resumed.headers["content-range"] == f"bytes {len(partial)}-{size - 1}/{size}"
    assert resumed.headers["content-usage"] == whole.headers["content-usage"]
    joined = partial + resumed.content
    listed = next(f for f in served.release["files"] if path.endswith(f["path"]))
    assert hashlib.sha256(joined).hexdigest() == listed["sha256"]


def test_downloads_range_forms_and_unsatisfiable_ranges(served: Served) -> None:
    path = served.path_of("croissant.json")
    whole = served.public.get(path).content
    size = len(whole)
    cases = {
        "bytes=0-9": (0, 9),
        "bytes=-20": (size - 20, size - 1),
        f"bytes={size - 5}-": (size - 5, size - 1),
    }
    for header, (first, last) in cases.items():
        answer = served.public.get(path, headers={"Range": header})
        assert answer.status_code == 206, header
        assert answer.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert answer.content == whole[first : last + 1], header
    beyond = served.public.get(path, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.json()["field"] == "Range"
    several = served.public.get(path, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == whole, "several ranges: the whole file"


def test_downloads_if_none_match_answers_304_and_a_stale_if_range_the_whole_file(served: Served) -> None:
    for path in (served.path_of("data.parquet"), "/static/app.js"):
        first = served.public.get(path)
        again = served.public.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304, path
        assert again.content == b"" and again.headers["etag"] == first.headers["etag"]
        stale = served.public.get(path, headers={"Range": "bytes=0-3", "If-Range": '"not-this-one"'})
        assert stale.status_code == 200 and stale.content == first.content, path


def test_downloads_the_members_export_takes_head_and_ranges(served: Served) -> None:
    whole = served.member.get("/api/v1/me/contributions.jsonl")
    assert whole.status_code == 200
    head = served.member.head("/api/v1/me/contributions.jsonl")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    tail = served.member.get("/api/v1/me/contributions.jsonl", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]


def test_downloads_static_files_stay_inside_their_folder(served: Served) -> None:
    for path in ("/static/%00", "/static/../pages.py", "/static/%2e%2e/pages.py", "/static/"):
        answer = served.public.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
