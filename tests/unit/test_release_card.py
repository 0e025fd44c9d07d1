"""Issue 12: the dataset card's metadata is written by huggingface_hub's card classes and reads
back, through the Hub's own parser, exactly as meant, whatever the co-op's name holds."""

from __future__ import annotations

import pytest
from huggingface_hub import DatasetCard

from coop.governance import License
from coop.node.releases.card import card_metadata, dataset_card
from coop.node.releases.model import BucketSummary, ReleaseSummary

HOSTILE = [
    "Plain Co-op",
    'The "Quoted" Co-op',
    "It's: a co-op # not a comment",
    "line one\nlicense: mit\n---\nconfigs: []",
    "---",
    "- [a, b] {c: d}",
    "  leading spaces & trailing  ",
    "next\x85line\u2028sep\r\nwindows",
    "émoji 🐳 ünï",
]


def _bucket(licence: License, records: int, languages: dict[str, int]) -> BucketSummary:
    return BucketSummary(
        name=licence.bucket,
        license=licence,
        records=records,
        content_usage="train-ai=n",
        labels={"good": records},
        languages=languages,
        files=(),
    )


def _summary(coop: str) -> ReleaseSummary:
    buckets = (
        _bucket(License.CC0, 2, {"en": 1, "unknown": 1}),
        _bucket(License.CC_BY, 0, {}),  # empty: no config
        _bucket(License.CC_BY_SA, 1, {'x: "y"\n- z': 1}),
    )
    return ReleaseSummary(
        version=3,
        name="v3",
        coop=coop,
        node_id="ab" * 32,
        created_at=1_700_000_000,
        records=3,
        buckets=buckets,
        tombstones=0,
        files=(),
    )


@pytest.mark.parametrize("coop", HOSTILE)
def test_card_metadata_reads_back_as_written(coop: str) -> None:
    summary = _summary(coop)
    text = dataset_card(summary)
    card = DatasetCard(text)  # the Hub's own reader (its YAML block regex and yaml.safe_load)
    data = card.data.to_dict()
    assert data == card_metadata(summary)
    # The release's licences and one config per non-empty bucket, the first the default.
    assert data["license"] == ["cc0-1.0", "cc-by-sa-4.0"]
    assert data["configs"] == [
        {"config_name": "cc0", "data_files": [{"split": "train", "path": "cc0/*.parquet"}], "default": True},
        {"config_name": "cc-by-sa", "data_files": [{"split": "train", "path": "cc-by-sa/*.parquet"}]},
    ]
    assert data["language"] == ["en", 'x: "y"\n- z']
    # The name itself comes back whole (NEL, a YAML line break, as the line break it stands for).
    expected = coop.replace("\x85", "\n")
    assert data["pretty_name"] == f"{expected} co-op chats"
    assert f"the {expected} data co-op" in data["extra_gated_prompt"]
    assert set(data) == {
        "pretty_name",
        "license",
        "language",
        "tags",
        "extra_gated_prompt",
        "extra_gated_fields",
        "configs",
    }
    assert data["extra_gated_fields"]["Affiliation"] == "text"
    # The words follow the metadata block.
    assert card.text.startswith(f"\n# {coop}: release v3\n")


def test_card_of_a_release_with_no_records_still_names_a_licence() -> None:
    summary = ReleaseSummary(
        version=1,
        name="v1",
        coop="Empty",
        node_id="cd" * 32,
        created_at=1_700_000_000,
        records=0,
        buckets=(),
        tombstones=0,
        files=(),
    )
    data = DatasetCard(dataset_card(summary)).data.to_dict()
    assert data["license"] == ["other"]
    assert "configs" not in data and "language" not in data
