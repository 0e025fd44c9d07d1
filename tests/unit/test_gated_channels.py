"""Gated buckets on the public channels: git, the Hub and the static site carry the card and the
checksums of a gated bucket, never its data files, and the card says where to request access."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import RepositoryNotFoundError

from coop.node.channels.publish import publish
from coop.node.collective.settings import Actor
from coop.node.releases.card import CARD
from coop.node.releases.statement import STATEMENT
from coop.node.runtime import Node
from coop.node.web.static_site import build_site

from factories import contribute, make_member, make_node, process

ADMIN = Actor("ada", admin=True)
SA = "CC-BY-SA-4.0"
NODE_URL = "https://coop.example.org"


class FakeHub:
    """An in-memory dataset repository (the Hub is out of reach: the network edge is faked,
    as in test_channel_hf.py)."""

    def __init__(self) -> None:
        self.exists = False
        self.head: str | None = None
        self.files: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.commits: list[list[Any]] = []

    def repo_info(self, repo_id: str, **kwargs: Any) -> Any:
        if not self.exists:
            request = httpx.Request("GET", "https://huggingface.invalid/api/datasets/x")
            raise RepositoryNotFoundError("404", response=httpx.Response(404, request=request))  # type: ignore[arg-type]
        return type("Info", (), {"sha": self.head})()

    def list_repo_files(self, repo_id: str, **kwargs: Any) -> list[str]:
        return sorted(self.files)

    def list_repo_refs(self, repo_id: str, **kwargs: Any) -> Any:
        tags = [type("Ref", (), {"name": n, "target_commit": c})() for n, c in self.tags.items()]
        return type("Refs", (), {"tags": tags})()

    def create_repo(self, repo_id: str, **kwargs: Any) -> Any:
        if not self.exists:
            self.exists, self.head = True, "0" * 40
            self.files = {".gitattributes": b"*.parquet filter=lfs\n"}
        return repo_id

    def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> Any:
        assert kwargs.get("parent_commit") == self.head
        ops = list(operations)
        for op in ops:
            if isinstance(op, CommitOperationAdd):
                self.files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()  # type: ignore[arg-type]
            else:
                assert isinstance(op, CommitOperationDelete)
                del self.files[op.path_in_repo]
        self.head = hashlib.sha256(f"{self.head}{len(self.commits)}".encode()).hexdigest()[:40]
        self.commits.append(ops)
        return type("CommitInfo", (), {"oid": self.head})()

    def create_tag(self, repo_id: str, *, tag: str, revision: str | None = None, **kwargs: Any) -> None:
        assert revision is not None
        self.tags[tag] = revision


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path, name="Gate Co-op")
    try:
        yield node
    finally:
        node.close()


def _released(node: Node) -> tuple[list[str], list[str]]:
    """Two open (CC-BY) and two share-alike records, released in v1: (open uids, sa uids)."""
    member, _ = make_member(node)
    open_ = [contribute(node, member, license="CC-BY-4.0", scope="public") for _ in range(2)]
    sa = [contribute(node, member, license=SA, scope="public") for _ in range(2)]
    process(node)
    node.cut_release()
    return open_, sa


def _gate(node: Node, *licences: str) -> None:
    node.change_settings({"access": {"gated": list(licences)}}, actor=ADMIN)


def _front(card: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(card.split("---\n")[1])
    return data


def _sums(text: str) -> set[str]:
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def test_gated_channels_hub_gets_the_card_and_checksums_but_no_gated_data_file(node: Node) -> None:
    open_, sa = _released(node)
    _gate(node, SA)
    hub = FakeHub()

    report = publish(node, "hf", target="coop/gated", api=hub, node_url=NODE_URL)

    assert [p.release for p in report.shipped] == ["v1"]
    assert not [p for p in hub.files if p.startswith("cc-by-sa/")]  # no data file of the gated bucket
    assert {"cc-by/data.jsonl", "cc-by/data.parquet", "SHA256SUMS", "release.json", STATEMENT} <= set(
        hub.files
    )
    # The checksums still name the gated files (a grantee's copy checks against them).
    assert {"cc-by-sa/data.jsonl", "cc-by-sa/data.parquet"} <= _sums(hub.files["SHA256SUMS"].decode())
    every = b"".join(hub.files.values())
    assert not any(uid.encode() in every for uid in sa) and all(uid.encode() in every for uid in open_)
    card = hub.files[CARD].decode()
    assert "## Gated access" in card and f"<{NODE_URL}/access>" in card and "`cc-by-sa`" in card
    # What gating cannot reach is said plainly (peers' federated releases are not re-checked).
    plain = " ".join(card.split())
    assert (
        "Gating closes this co-op's own files; copies peers already hold in federated releases cut"
        " before the gate stay public." in plain
    )
    assert [c["config_name"] for c in _front(card)["configs"]] == ["cc-by"]  # no config without files
    assert _front(card)["configs"][0]["default"] is True


def test_gated_channels_a_bucket_gated_after_publishing_leaves_the_hubs_branch(node: Node) -> None:
    _released(node)
    hub = FakeHub()
    publish(node, "hf", target="coop/gated", api=hub, node_url=NODE_URL)
    assert "cc-by-sa/data.parquet" in hub.files  # not gated yet: published
    member, _ = make_member(node)
    contribute(node, member, license="CC-BY-4.0", scope="public")
    process(node)
    node.cut_release()
    _gate(node, SA)

    publish(node, "hf", target="coop/gated", api=hub, node_url=NODE_URL)

    deleted = {op.path_in_repo for op in hub.commits[-1] if isinstance(op, CommitOperationDelete)}
    assert deleted == {"cc-by-sa/data.jsonl", "cc-by-sa/data.parquet"}
    assert not [p for p in hub.files if p.startswith("cc-by-sa/")]


def test_gated_channels_nothing_gated_publishes_the_cut_card_byte_for_byte(node: Node) -> None:
    _released(node)
    _gate(node, "CC0-1.0")  # a gated licence with no bucket in this release changes nothing
    hub = FakeHub()
    publish(node, "hf", target="coop/gated", api=hub)
    cut = (node.data.releases_path / "v1" / CARD).read_bytes()
    assert hub.files[CARD] == cut and "cc-by-sa/data.parquet" in hub.files


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_gated_channels_git_commit_holds_no_gated_data_file(node: Node, tmp_path: Path) -> None:
    open_, sa = _released(node)
    _gate(node, SA)
    bare = tmp_path / "dataset.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True, timeout=60)

    report = publish(node, "git", target=str(bare), node_url=NODE_URL)

    assert [p.release for p in report.shipped] == ["v1"]
    tree = _git("ls-tree", "-r", "--name-only", "v1", cwd=bare).split()
    assert not [p for p in tree if p.startswith("cc-by-sa/")]
    assert {"cc-by/data.jsonl", "SHA256SUMS", "release.json", STATEMENT, CARD} <= set(tree)
    card = _git("show", f"v1:{CARD}", cwd=bare)
    assert "## Gated access" in card and f"{NODE_URL}/access" in card
    history = _git("log", "--all", "-p", "--format=%H", cwd=bare)
    assert not any(uid in history for uid in sa) and all(uid in history for uid in open_)


def test_gated_channels_static_site_has_no_gated_file_record_or_page(node: Node, tmp_path: Path) -> None:
    open_, sa = _released(node)
    _gate(node, SA)
    out = tmp_path / "site"

    build_site(node, out, node_url=NODE_URL)

    release = out / "releases" / "v1"
    assert not (release / "cc-by-sa").exists() and (release / "cc-by" / "data.jsonl").is_file()
    assert (release / "SHA256SUMS").is_file() and (release / STATEMENT).is_file()
    assert "## Gated access" in (release / CARD).read_text()
    page = (out / "datasets" / "v1" / "index.html").read_text()
    assert "Gated:" in page and f"{NODE_URL}/access" in page
    assert 'href="/releases/v1/cc-by-sa/' not in page and 'href="/releases/v1/cc-by/data.jsonl"' in page
    # Nor the records of the gated bucket, in the browser or a page of their own.
    listed = {row["uid"] for row in json.loads((out / "browse" / "index.json").read_text())}
    assert listed == set(open_)
    every = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert not any(uid in every for uid in sa)
