"""croissant.json: written at every cut, validated and read by MLCommons' own loader, offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import mlcroissant as mlc
import pytest

from coop.node.contributions.rights import withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path, name="Croissant Co-op")
    try:
        yield node
    finally:
        node.close()


def _uids(path: Path) -> list[str]:
    return [json.loads(line)["uid"] for line in path.read_text().splitlines()]


# mlcroissant 1.1 still builds an rdflib ConjunctiveGraph and calls reset_index(inplace=True), which
# rdflib 7 and pandas 3 deprecate: their warnings, not ours.
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The inplace keyword:FutureWarning")
@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")
def test_croissant_validates_and_loads_every_bucket_with_its_checksums(node: Node) -> None:
    member, _ = make_member(node)
    for licence in ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-4.0"):
        contribute(node, member, license=licence, language="en", tags=["maths"])
    gone = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.cut_release()
    root = node.data.releases_path / "v2"

    doc = json.loads((root / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    for field in (
        "rai:dataCollection",
        "rai:personalSensitiveInformation",
        "rai:dataReleaseMaintenancePlan",
    ):
        assert doc[field], field
    assert "tombstones.jsonl" in doc["rai:dataReleaseMaintenancePlan"]
    objects = {d["contentUrl"]: d for d in doc["distribution"]}
    for bucket in ("cc0", "cc-by", "cc-by-sa"):
        parquet = objects[f"{bucket}/data.parquet"]
        assert parquet["sha256"] == hashlib.sha256((root / bucket / "data.parquet").read_bytes()).hexdigest()
    # croissant.json itself is covered by the release's checksums
    assert "croissant.json" in (root / "SHA256SUMS").read_text()

    dataset = mlc.Dataset(jsonld=str(root / "croissant.json"))  # raises on any validation error
    assert not dataset.metadata.ctx.issues.errors
    for bucket in ("cc0", "cc-by", "cc-by-sa"):
        rows = list(dataset.records(record_set=bucket))
        uids = [row[f"{bucket}/uid"].decode() for row in rows]
        assert uids == _uids(root / bucket / "data.jsonl")
        assert gone not in uids
        first = rows[0]
        assert [m[f"{bucket}/content/role"] for m in first[f"{bucket}/content"]] == [b"user", b"assistant"]
    withdrawn = [row["tombstones/uid"].decode() for row in dataset.records(record_set="tombstones")]
    assert withdrawn == [gone]
