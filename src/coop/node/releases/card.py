"""The dataset card (``README.md``): Hugging Face metadata and plain words about the release.

The metadata block is built with ``huggingface_hub``'s own card classes
(:class:`~huggingface_hub.DatasetCardData`, :class:`~huggingface_hub.DatasetCard`),
so names with quotes, colons or line breaks come out as YAML the Hub reads back
exactly: the licences, one ``configs`` entry per licence bucket (so
``datasets.load_dataset(path, "cc-by-sa")`` picks a bucket) and the gated-access
terms.  ``huggingface_hub`` takes half a second to import: it is loaded when a card
is written, never with this module.
"""

from __future__ import annotations

from typing import Any, Final

from coop.node.releases.model import ReleaseSummary

__all__ = ["CARD", "card_metadata", "dataset_card"]

CARD: Final = "README.md"
_TERMS: Final = (
    "These chats were shared by members of the {coop} data co-op under their own licences and AI-use "
    "preferences. To use them you agree: not to try to re-identify anyone, contributor or person "
    "mentioned; to honour each record's licence and its ai_use preference (train-ai=n means no AI "
    "training); and to delete records listed as withdrawn in tombstones.jsonl from any copy you hold."
)
_GATE_REID: Final = "I will not try to re-identify contributors or anyone mentioned in the chats"
_GATE_HONOUR: Final = "I will honour each record's licence and AI-use preference"
_GATE_WITHDRAW: Final = "I will delete withdrawn records (tombstones.jsonl) from my copies"
# The metadata keys in the order the card has always written them.
_ORDER: Final = [
    "pretty_name",
    "license",
    "language",
    "tags",
    "extra_gated_prompt",
    "extra_gated_fields",
    "configs",
]


def _text(value: str) -> str:
    """A string as YAML carries it: NEL (U+0085), a line break to YAML, would not read back as
    written (PyYAML writes it raw), so it becomes the line break it stands for."""
    return value.replace("\x85", "\n")


def card_metadata(summary: ReleaseSummary) -> dict[str, Any]:
    """The card's metadata: the licences, the languages, the gated terms, one config per bucket."""
    buckets = [b for b in summary.buckets if b.records]
    languages = sorted({lang for b in buckets for lang in b.languages if lang != "unknown"})
    metadata: dict[str, Any] = {
        "pretty_name": _text(summary.coop + " co-op chats"),
        "license": [b.license.value.lower() for b in buckets] or ["other"],
    }
    if languages:
        metadata["language"] = [_text(lang) for lang in languages]
    metadata["tags"] = ["chat", "human-feedback", "data-co-op"]
    # The dataset terms, as Hugging Face's gated access shows them (and anyone reading the card).
    metadata["extra_gated_prompt"] = _text(_TERMS.format(coop=summary.coop))
    metadata["extra_gated_fields"] = {
        _GATE_REID: "checkbox",
        _GATE_HONOUR: "checkbox",
        _GATE_WITHDRAW: "checkbox",
        "Affiliation": "text",
    }
    if buckets:
        metadata["configs"] = [
            {
                "config_name": bucket.name,
                "data_files": [{"split": "train", "path": f"{bucket.name}/*.parquet"}],
                **({"default": True} if index == 0 else {}),
            }
            for index, bucket in enumerate(buckets)
        ]
    return metadata


def dataset_card(summary: ReleaseSummary) -> str:
    """The whole ``README.md``: the metadata block, then the words."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**card_metadata(summary))
    card = DatasetCard(f"---\n{data.to_yaml(original_order=_ORDER)}\n---\n{_body(summary)}")
    return str(card)


def _body(summary: ReleaseSummary) -> str:
    buckets = [b for b in summary.buckets if b.records]
    title = f"federated release {summary.name}" if summary.origins else f"release {summary.name}"
    if summary.revision > 1:
        title += f", revision {summary.revision}"
    lines = [
        "",
        f"# {summary.coop}: {title}",
        "",
        f"{summary.records} {'chat' if summary.records == 1 else 'chats'} shared by members of the "
        f"{summary.coop} data co-op, each",
        "labelled **good** or **fail** by the person who had the conversation, with their",
        "ratings, notes and corrections. Personal data found in the text was replaced by",
        "typed placeholders such as `[EMAIL]` before release.",
        "",
        "| bucket | licence | records | Content-Usage |",
        "| --- | --- | --- | --- |",
    ]
    for bucket in summary.buckets:
        lines.append(
            f"| `{bucket.name}` | {bucket.license.value} | {bucket.records} | `{bucket.content_usage or '(none)'}` |"
        )
    lines += [
        "",
        *(
            [
                f"A federated release: records of {len(summary.origins)} co-ops, each row keeping",
                "its `origin` (the node id of the co-op it came from), licence and AI-use preference.",
                "",
            ]
            if summary.origins
            else []
        ),
        "## Loading one bucket",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("path/to/{summary.name}", "{buckets[0].name if buckets else "cc0"}", split="train")',
        "```",
        "",
        "Each licence is its own bucket: ShareAlike records are never mixed with others.",
        "",
        "## The members' choices travel with every record",
        "",
        "- `license`: the licence the member chose (SPDX id).",
        "- `ai_use`: the member's AI-use preference (IETF aipref vocabulary, the same text as",
        "  the `Content-Usage` header). A bucket's `Content-Usage` is the most restrictive of its",
        "  records; honour each row's own `ai_use` when you use rows one by one.",
        "- `attribution`: how the member asked to be credited (`username`, `pseudonym`,",
        "  `anonymous`). `contributor_hash` is a keyed hash, not an identifier you can reverse:",
        "  the member's for `username` records, one per pseudonym for `pseudonym` records (it links",
        "  only records under that pseudonym), and none for `anonymous` records, which carry nothing",
        "  that links them to any other record.",
        "",
        "## Withdrawals",
        "",
        f"`tombstones.jsonl` lists the {summary.tombstones} records withdrawn by their members.",
        "They are left out of this and every future release. If you hold an earlier release,",
        "delete the listed records from your copy.",
        "",
        "When a member withdraws a record later, the co-op removes it from every release it still",
        "serves: the release keeps its name and gets a new revision (`revision` in `release.json`),",
        "with a statement in `revisions/` signed by the co-op's key naming the records removed and",
        "each changed file's old and new SHA-256. Copies already downloaded elsewhere cannot be",
        "recalled: if you hold one, delete the records a revision names.",
        *(
            [
                "",
                f"This is revision {summary.revision} of {summary.name}: records withdrawn since the cut "
                "were removed (see `revisions/`).",
            ]
            if summary.revision > 1
            else []
        ),
        "",
        "## Checksums",
        "",
        "`SHA256SUMS` covers every file (`sha256sum -c SHA256SUMS`) but `release.dsse.json`: the",
        "release summary with every file's SHA-256, signed by the co-op's Ed25519 key when the",
        "release was cut. `croissant.json` describes the release in MLCommons Croissant 1.1 (with",
        "its responsible-AI fields) for tools that read it.",
        "",
    ]
    return "\n".join(lines)
