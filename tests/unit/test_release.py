"""Cutting releases: buckets by licence, only public live records, tombstones, card, checksums."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases import cut as release_module
from coop.node.releases.model import bucket_content_usage
from coop.node.releases.statement import STATEMENT
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _uids(path: Path) -> list[str]:
    return [json.loads(line)["uid"] for line in path.read_text().splitlines()]


def test_cut_release_partitions_public_records_by_licence(node: Node) -> None:
    member, _ = make_member(node)
    cc0 = contribute(node, member, license="CC0-1.0")
    by = contribute(node, member, license="CC-BY-4.0")
    sa = [contribute(node, member, license="CC-BY-SA-4.0") for _ in range(2)]
    contribute(node, member, license="CC0-1.0", scope="federation")
    contribute(node, member, license="CC0-1.0", scope="node")
    process(node)

    summary = node.cut_release()
    root = node.data.releases_path / "v1"

    assert summary.name == "v1"
    assert summary.records == 4
    assert _uids(root / "cc0/data.jsonl") == [cc0]
    assert _uids(root / "cc-by/data.jsonl") == [by]
    assert _uids(root / "cc-by-sa/data.jsonl") == sa  # ShareAlike alone in its bucket
    for bucket in ("cc0", "cc-by", "cc-by-sa"):
        table = pq.read_table(root / bucket / "data.parquet")
        assert table.column("uid").to_pylist() == _uids(root / bucket / "data.jsonl")
        assert set(table.column("license").to_pylist()) == {summary.bucket(bucket).license.value}  # type: ignore[union-attr]


def test_cut_release_checksums_cover_every_file(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member, license="CC-BY-4.0")
    process(node)
    node.cut_release()
    root = node.data.releases_path / "v1"
    listed = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    # Every file but SHA256SUMS itself and the statement signed at the cut (it signs the checksums).
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    on_disk -= {"SHA256SUMS", STATEMENT}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest


def test_cut_release_withdrawn_record_left_out_and_tombstoned(node: Node) -> None:
    member, _ = make_member(node)
    keep = contribute(node, member, license="CC0-1.0")
    gone = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

    node.cut_release()
    root = node.data.releases_path / "v2"
    assert _uids(root / "cc0/data.jsonl") == [keep]
    tombstones = [json.loads(line) for line in (root / "tombstones.jsonl").read_text().splitlines()]
    assert [t["uid"] for t in tombstones] == [gone]
    assert tombstones[0]["reason"] == "withdrawn"
    # The earlier release no longer holds it either: revised (v1, revision 2) before the cut.
    assert not (node.data.releases_path / "v1").exists()
    assert _uids(node.data.releases_path / "v1-r2/cc0/data.jsonl") == [keep]


def test_cut_release_card_has_one_config_per_bucket(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member, license="CC-BY-SA-4.0", language="id")
    contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    card = DatasetCard.load(node.data.releases_path / "v1/README.md").data  # the Hub's own reader
    # Empty buckets get no config; the first is the default.
    assert [c["config_name"] for c in card["configs"]] == ["cc0", "cc-by-sa"]
    assert card["configs"][0]["default"] is True
    assert card["configs"][1]["data_files"] == [{"split": "train", "path": "cc-by-sa/*.parquet"}]
    assert card.license == ["cc0-1.0", "cc-by-sa-4.0"]
    assert card.language == ["id"]


def test_cut_release_loads_one_bucket_with_datasets(node: Node) -> None:
    datasets = pytest.importorskip("datasets")
    member, _ = make_member(node)
    sa = contribute(node, member, license="CC-BY-SA-4.0")
    contribute(node, member, license="CC-BY-4.0")
    process(node)
    node.cut_release()
    path = str(node.data.releases_path / "v1")
    loaded = datasets.load_dataset(
        path, "cc-by-sa", split="train", cache_dir=str(node.data.root / "hf-cache")
    )
    assert loaded["uid"] == [sa]
    assert loaded[0]["license"] == "CC-BY-SA-4.0"
    assert loaded[0]["content"][0]["role"] == "user"


def test_cut_release_record_leaving_mid_cut_restarts_the_cut(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = make_member(node)
    keep = contribute(node, member, license="CC0-1.0")
    gone = contribute(node, member, license="CC0-1.0")
    process(node)
    real = release_module._write
    calls = []

    def write_then_withdraw(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        if not calls:  # the member withdraws while the first attempt's files are written
            node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
        calls.append(1)
        return result

    monkeypatch.setattr(release_module, "_write", write_then_withdraw)
    summary = node.cut_release()
    assert len(calls) == 2
    assert summary.name == "v1"
    assert _uids(node.data.releases_path / "v1/cc0/data.jsonl") == [keep]


def test_cut_release_leftovers_of_killed_cut_are_removed(node: Node) -> None:
    member, _ = make_member(node)
    contribute(node, member, license="CC0-1.0")
    process(node)
    releases = node.data.releases_path
    (releases / ".v1.tmp").mkdir()
    (releases / "v1").mkdir()  # renamed but never recorded: invisible, and replaced
    (releases / "v1" / "junk").write_text("half")
    node.cut_release()
    assert not (releases / ".v1.tmp").exists()
    assert not (releases / "v1" / "junk").exists()
    assert (releases / "v1" / "SHA256SUMS").exists()


def test_cut_release_marks_records_released_in_version(node: Node) -> None:
    member, _ = make_member(node)
    uid = contribute(node, member, license="CC0-1.0")
    federation = contribute(node, member, license="CC0-1.0", scope="federation")
    process(node)
    node.cut_release()
    from coop.node.contributions.repository import get_contribution

    released = node.store.read(lambda c: get_contribution(c, uid))
    kept = node.store.read(lambda c: get_contribution(c, federation))
    assert released is not None and released.view.state == "released"
    assert released.view.released_in == "v1"
    assert kept is not None and kept.view.state == "accepted"


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        pytest.param(["train-ai=y, search=y"], "search=y, train-ai=y", id="all-yes"),
        pytest.param(["train-ai=y", "train-ai=n"], "train-ai=n", id="one-refusal"),
        pytest.param(
            ["train-ai=n;exceptions=cc-cr", "train-ai=n;exceptions=cc-cr"],
            "train-ai=n;exceptions=cc-cr",
            id="shared-signal-kept",
        ),
        pytest.param(["train-ai=n;exceptions=cc-cr", "train-ai=n"], "train-ai=n", id="mixed-signal-dropped"),
        pytest.param(["train-ai=y", "search=y"], "", id="partial-statements-say-nothing"),
    ],
)
def test_bucket_content_usage_is_most_restrictive(preferences: list[str], expected: str) -> None:
    assert bucket_content_usage(preferences) == expected
