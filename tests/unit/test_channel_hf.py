"""The Hugging Face channel: the staged folder, the commit plan, and one atomic commit per release.

The Hub itself is out of reach here, so ``FakeHub`` stands in for ``HfApi`` (the
one mock of the suite). It keeps the repository as the Hub would: a branch head,
files, tags, and it refuses a commit whose ``parent_commit`` is not the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import httpx
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from coop.node.channels.base import ChannelError
from coop.node.channels.publish import publish
from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases.statement import STATEMENT, verify_release
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process
from nodeproc import coop


class _Ref:
    def __init__(self, name: str, commit: str) -> None:
        self.name = name
        self.target_commit = commit


class FakeHub:
    """An in-memory dataset repository with the Hub's commit semantics."""

    def __init__(self) -> None:
        self.exists = False
        self.head: str | None = None
        self.files: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.commits: list[dict[str, Any]] = []

    def _missing(self) -> RepositoryNotFoundError:
        request = httpx.Request("GET", "https://huggingface.invalid/api/datasets/x")
        return RepositoryNotFoundError(
            "404: repository not found", response=httpx.Response(404, request=request)
        )  # type: ignore[arg-type]

    def repo_info(self, repo_id: str, *, repo_type: str | None = None, revision: str | None = None) -> Any:
        if not self.exists:
            raise self._missing()
        return type("Info", (), {"sha": self.head})()

    def list_repo_files(
        self, repo_id: str, *, revision: str | None = None, repo_type: str | None = None
    ) -> list[str]:
        if not self.exists:
            raise self._missing()
        return sorted(self.files)

    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None) -> Any:
        return type("Refs", (), {"tags": [_Ref(n, c) for n, c in self.tags.items()]})()

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False) -> Any:
        assert repo_type == "dataset"
        if not self.exists:
            self.exists = True
            self.files = {".gitattributes": b"*.parquet filter=lfs\n"}
            self.head = "0" * 40
        return repo_id

    def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> Any:
        assert kwargs["repo_type"] == "dataset"
        if kwargs.get("parent_commit") != self.head:
            request = httpx.Request("POST", "https://huggingface.invalid/api/datasets/x/commit/main")
            raise HfHubHTTPError(
                "412: parent commit is not the head", response=httpx.Response(412, request=request)
            )  # type: ignore[arg-type]
        ops = list(operations)
        files = dict(self.files)
        for op in ops:
            if isinstance(op, CommitOperationAdd):
                files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()  # type: ignore[arg-type]
            else:
                assert isinstance(op, CommitOperationDelete)
                del files[op.path_in_repo]
        self.files = files
        self.head = hashlib.sha256(f"{self.head}{len(self.commits)}".encode()).hexdigest()[:40]
        self.commits.append({"message": kwargs["commit_message"], "ops": ops, "oid": self.head})
        return type("CommitInfo", (), {"oid": self.head})()

    def create_tag(self, repo_id: str, *, tag: str, revision: str | None = None, **kwargs: Any) -> None:
        assert revision is not None
        self.tags[tag] = revision


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path, name="Hub Co-op")
    try:
        yield node
    finally:
        node.close()


def _card(text: str) -> dict[str, Any]:
    front = text.split("---\n")[1]
    data: dict[str, Any] = yaml.safe_load(front)
    return data


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # datasets' own dependencies, offline
def test_dry_run_writes_the_exact_plan_and_the_staged_folder_loads_per_bucket(
    node: Node, tmp_path: Path
) -> None:
    member, _ = make_member(node)
    by = [contribute(node, member, license="CC-BY-4.0", language="en") for _ in range(2)]
    sa = contribute(node, member, license="CC-BY-SA-4.0", language="en")
    process(node)
    node.cut_release()
    hub = FakeHub()

    report = publish(node, "hf", target="coop/hub-chats", dry_run=True, api=hub)

    assert report.planned == ["v1"] and report.shipped == [] and hub.commits == []
    assert report.plan is not None
    plan = json.loads(Path(report.plan).read_text())
    staged = Path(plan["staged"])
    assert plan["repo_id"] == "coop/hub-chats" and plan["repo_type"] == "dataset"
    assert plan["parent_commit"] is None  # a new repository: created, then one commit
    assert plan["delete"] == []
    added = {f["path_in_repo"]: f for f in plan["add"]}
    assert {"README.md", "croissant.json", "release.json", "SHA256SUMS", STATEMENT} <= set(added)
    for path, entry in added.items():
        assert entry["sha256"] == hashlib.sha256((staged / path).read_bytes()).hexdigest()
    # The card: licences, one config per bucket, the gated-access terms.
    card = _card((staged / "README.md").read_text())
    assert card["license"] == ["cc-by-4.0", "cc-by-sa-4.0"]
    assert {c["config_name"] for c in card["configs"]} == {"cc-by", "cc-by-sa"}
    assert "re-identify" in card["extra_gated_prompt"]
    fields = " ".join(card["extra_gated_fields"])
    assert "re-identify" in fields and "licence and AI-use preference" in fields
    # Each bucket loads on its own with the datasets library, offline, from the staged folder.
    cache = str(tmp_path / "datasets-cache")  # never a cached copy of another run's folder
    loaded = datasets.load_dataset(str(staged), "cc-by", split="train", cache_dir=cache)
    assert sorted(loaded["uid"]) == sorted(by)
    assert set(loaded["license"]) == {"CC-BY-4.0"}
    assert datasets.load_dataset(str(staged), "cc-by-sa", split="train", cache_dir=cache)["uid"] == [sa]
    # And the staged copy checks against the co-op's key.
    assert verify_release(staged, node.identity.public_key).name == "v1"


def test_each_release_is_one_commit_with_the_withdrawn_files_deleted_in_it(node: Node) -> None:
    member, _ = make_member(node)
    keep = contribute(node, member, license="CC-BY-4.0")
    gone = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    hub = FakeHub()
    first = publish(node, "hf", target="coop/hub-chats", api=hub)
    assert [p.release for p in first.shipped] == ["v1"]
    assert "cc0/data.parquet" in hub.files and hub.tags["v1"] == hub.head

    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.cut_release()  # the cc0 bucket is now empty: its files must go
    before = hub.head
    plan = publish(node, "hf", target="coop/hub-chats", dry_run=True, api=hub)
    planned = json.loads(Path(plan.plan or "").read_text())
    assert planned["parent_commit"] == before
    assert planned["delete"] == ["cc0/data.jsonl", "cc0/data.parquet"]
    second = publish(node, "hf", target="coop/hub-chats", api=hub)

    assert [p.release for p in second.shipped] == ["v2"]
    assert len(hub.commits) == 2  # one commit per release, adds and deletes together
    last = hub.commits[-1]
    assert {op.path_in_repo for op in last["ops"] if isinstance(op, CommitOperationDelete)} == {
        "cc0/data.jsonl",
        "cc0/data.parquet",
    }
    assert not any(path.startswith("cc0/") for path in hub.files)
    assert ".gitattributes" in hub.files  # the Hub's own file is left alone
    tombstones = hub.files["tombstones.jsonl"].decode()
    assert gone in tombstones and keep.encode() in hub.files["cc-by/data.jsonl"]
    assert sorted(hub.tags) == ["v1", "v2"]
    assert node.metrics().channels["hf"]["release"] == 2


def test_a_concurrent_change_on_the_hub_fails_the_commit_instead_of_mixing(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member)
    process(node)
    node.cut_release()
    hub = FakeHub()
    publish(node, "hf", target="coop/hub-chats", api=hub)
    contribute(node, member)
    process(node)
    node.cut_release()

    class Racing(FakeHub):
        """Someone commits to the repository between our plan and our commit."""

        def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> Any:
            self.head = "f" * 40
            return super().create_commit(repo_id, operations, **kwargs)

    racing = Racing()
    racing.__dict__.update(hub.__dict__)
    files_before = dict(racing.files)
    with pytest.raises(ChannelError, match="412"):
        publish(node, "hf", target="coop/hub-chats", api=racing)
    assert racing.files == files_before and "v2" not in racing.tags
    assert "hf" in node.metrics().channels and node.metrics().channels["hf"]["release"] == 1


def test_a_bad_repository_id_is_refused_naming_the_field(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member)
    process(node)
    node.cut_release()
    with pytest.raises(ChannelError) as caught:
        publish(node, "hf", target="not a repo", api=FakeHub())
    assert caught.value.field == "target"


def test_without_the_hub_the_command_line_says_so_in_one_line(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member)
    process(node)
    node.cut_release()
    root = node.data.root
    node.close()
    done = coop(
        "publish", str(root), "--channel", "hf", "--target", "coop/hub-chats", "--dry-run", check=False
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coop: error:") and lines[0].endswith("[target]")


def test_a_revision_of_the_latest_release_is_one_more_commit_tagged_vn_rk(node: Node) -> None:
    member, _ = make_member(node)
    keep = contribute(node, member, license="CC-BY-4.0")
    gone = contribute(node, member, license="CC-BY-4.0", text="User: my cat is Zorblax.\nAssistant: Nice.")
    process(node)
    node.cut_release()
    hub = FakeHub()
    publish(node, "hf", target="coop/hub-chats", api=hub)
    v1 = hub.tags["v1"]
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

    report = publish(node, "hf", target="coop/hub-chats", api=hub)  # revised first, then shipped

    assert [p.release for p in report.shipped] == ["v1-r2"]
    assert hub.tags["v1"] == v1 and hub.tags["v1-r2"] == hub.head  # the old tag never moves
    assert b"Zorblax" not in hub.files["cc-by/data.jsonl"] and keep.encode() in hub.files["cc-by/data.jsonl"]
    assert "revisions/r2.dsse.json" in hub.files
    assert json.loads(hub.files["release.json"])["revision"] == 2
    assert hub.commits[-1]["message"].startswith("Release v1-r2:")
    # Nothing more to ship; a dry run plans nothing.
    assert publish(node, "hf", target="coop/hub-chats", dry_run=True, api=hub).planned == []
