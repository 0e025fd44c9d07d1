"""Croissant 1.1 metadata (JSON-LD, with the RAI vocabulary) for a release folder.

``croissant.json`` sits next to ``release.json`` and describes the files by
their paths relative to the release folder, so the same document works in the
release folder and in a copy of it (the Hugging Face channel stages the same
layout).  It is built from the release summary alone: nothing is read from the
bucket files and nothing is fetched.

Each licence bucket is one ``cr:RecordSet`` read from its Parquet file; the
conversation is a repeated field whose sub-fields pick ``role`` and ``content``
out of each message struct.  The JSONL copies are listed as ``cr:FileObject``\\s
with their checksums too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from coop.governance import Channel
from coop.node.intake.redaction import PiiType

if TYPE_CHECKING:  # the cut writes croissant.json, so only the types come from the model
    from coop.node.releases.model import BucketSummary, FileEntry, ReleaseSummary

__all__ = ["CONFORMS_TO", "CROISSANT", "build_croissant", "croissant_bytes", "spdx_url"]

CONFORMS_TO: Final = "http://mlcommons.org/croissant/1.1"
CROISSANT: Final = "croissant.json"

# The Croissant 1.1 context as mlcroissant 1.1.1 writes it (its term set, so the
# reference loader reads every term the way we mean it and warns about none), plus
# the terms the 1.1 specification adds that do not clash with it.  `@vocab` is
# https://schema.org/: mlcroissant resolves every schema.org type and property there.
_CONTEXT: Final[dict[str, Any]] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "readLines": "cr:readLines",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
}

_ENCODINGS: Final = {
    ".parquet": "application/x-parquet",
    ".jsonl": "application/jsonlines",
    ".json": "application/json",
    ".md": "text/markdown",
}

# (column, dataType, description) of the scalar and list columns each bucket's RecordSet exposes.
_COLUMNS: Final = (
    ("uid", "sc:Text", "The record's id (a UUIDv7); tombstones.jsonl names withdrawn records by it."),
    ("type", "sc:Text", "The kind of record (`chat`)."),
    ("created_at", "sc:Integer", "When the member contributed the chat (Unix seconds)."),
    ("route", "sc:Text", "The intake route the chat came by."),
    ("model", "sc:Text", "The model that answered, when the member or the export named one."),
    ("label", "sc:Text", "The member's own verdict on the chat: `good` or `fail`."),
    ("note", "sc:Text", "The member's note on the chat, if any."),
    ("correction", "sc:Text", "What the assistant should have answered, if the member wrote it."),
    ("language", "sc:Text", "The chat's language (ISO 639-1), when known."),
    ("license", "sc:Text", "The licence the member chose for this record (SPDX id)."),
    (
        "ai_use",
        "sc:Text",
        "The member's AI-use preference (IETF aipref vocabulary, as in the Content-Usage header).",
    ),
    (
        "contributor_hash",
        "sc:Text",
        "A salted HMAC, not reversible: of the member's account (credited by username), of the "
        "pseudonym (one per pseudonym), or null (anonymous).",
    ),
)

_FILE_DESCRIPTIONS: Final = {
    "README.md": "The dataset card.",
    "release.json": "The release summary: buckets, record counts, labels, languages and file checksums.",
    "tombstones.jsonl": "Records withdrawn by their members (uid, reason, withdrawn_at): delete them.",
}


def spdx_url(spdx_id: str) -> str:
    """The SPDX licence list's page for an SPDX identifier."""
    return f"https://spdx.org/licenses/{spdx_id}.html"


def build_croissant(
    summary: ReleaseSummary,
    files: Sequence[FileEntry],
    *,
    url: str | None = None,
    terms_version: str | None = None,
) -> dict[str, Any]:
    """The Croissant JSON-LD document of a release, from its summary and its files' checksums.

    ``files`` are the release's files (bucket files, card, summary, tombstones) with
    their SHA-256; ``url`` is where the dataset lives, when known; ``terms_version``
    names the terms the members agreed to.  Files are referenced by relative path,
    so the document sits in the release folder (or any copy of it).
    """
    coop = summary.coop
    buckets = [b for b in summary.buckets if b.records]
    published = datetime.fromtimestamp(summary.created_at, UTC)
    doc: dict[str, Any] = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "name": f"{coop} co-op chats {summary.name}",
        "description": _description(summary, coop),
        "conformsTo": CONFORMS_TO,
        "citeAs": _cite_as(summary, coop, published),
        "creator": {"@type": "sc:Organization", "name": coop},
        "datePublished": published.isoformat().replace("+00:00", "Z"),
        "version": f"{summary.version}.0.0",
        "license": [spdx_url(b.license.value) for b in buckets],
        "keywords": ["chat", "human feedback", "data co-op", "AI preferences"],
    }
    languages = sorted({lang for b in buckets for lang in b.languages if lang != "unknown"})
    if languages:
        doc["inLanguage"] = languages
    if url is not None:
        doc["url"] = url
    doc |= _rai(summary, coop, terms_version)
    listed = sorted((f for f in files if f.path != CROISSANT), key=lambda f: f.path)
    doc["distribution"] = [_file_object(entry, summary) for entry in listed]
    record_sets = [_bucket_record_set(bucket, federated=bool(summary.origins)) for bucket in buckets]
    if summary.tombstones:
        record_sets.append(_tombstone_record_set(federated=bool(summary.origins)))
    doc["recordSet"] = record_sets
    return doc


def croissant_bytes(doc: dict[str, Any]) -> bytes:
    """The document as written to ``croissant.json``: indented JSON, keys in a stable order."""
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def _file_object(entry: FileEntry, summary: ReleaseSummary) -> dict[str, Any]:
    suffix = Path(entry.path).suffix
    bucket = _bucket_of(entry.path, summary)
    if bucket is not None:
        kind = "Parquet" if suffix == ".parquet" else "JSON Lines"
        description = (
            f"The {bucket.records} records of the `{bucket.name}` bucket under {bucket.license.value} "
            f"({kind}; the same rows in both formats)."
        )
    else:
        description = _FILE_DESCRIPTIONS.get(entry.path, "A file of the release.")
    node: dict[str, Any] = {
        "@type": "cr:FileObject",
        "@id": entry.path,
        "name": entry.path,
        "description": description,
        "contentUrl": entry.path,
        "contentSize": f"{entry.bytes} B",
        "encodingFormat": _ENCODINGS.get(suffix, "application/octet-stream"),
        "sha256": entry.sha256,
    }
    if bucket is not None:
        node["license"] = spdx_url(bucket.license.value)
    return node


def _bucket_of(path: str, summary: ReleaseSummary) -> BucketSummary | None:
    return next((b for b in summary.buckets if any(f.path == path for f in b.files)), None)


def _parquet_path(bucket: BucketSummary) -> str:
    return next(f.path for f in bucket.files if f.path.endswith(".parquet"))


def _bucket_record_set(bucket: BucketSummary, *, federated: bool) -> dict[str, Any]:
    source_file = _parquet_path(bucket)
    name = bucket.name

    def column(key: str, data_type: str, description: str, *, array: bool = False) -> dict[str, Any]:
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"{name}/{key}",
            "name": key,
            "description": description,
            "dataType": data_type,
            "source": {"fileObject": {"@id": source_file}, "extract": {"column": key}},
        }
        if array:
            field["isArray"] = True
        return field

    def message_part(key: str, description: str) -> dict[str, Any]:
        return {
            "@type": "cr:Field",
            "@id": f"{name}/content/{key}",
            "name": key,
            "description": description,
            "dataType": "sc:Text",
            "source": {
                "fileObject": {"@id": source_file},
                "extract": {"column": "content"},
                "transform": {"jsonPath": key},
            },
        }

    fields = [column(key, data_type, description) for key, data_type, description in _COLUMNS]
    if federated:
        fields.append(column("origin", "sc:Text", "The node id of the co-op the record came from."))
    fields.append(column("tags", "sc:Text", "Free tags the member gave the chat.", array=True))
    fields.append(
        {
            "@type": "cr:Field",
            "@id": f"{name}/content",
            "name": "content",
            "description": "The conversation: its messages in order, personal data replaced by placeholders.",
            "isArray": True,
            "subField": [
                message_part("role", "Who wrote the message: `user`, `assistant` or `system`."),
                message_part("content", "The text of the message."),
            ],
        }
    )
    return {
        "@type": "cr:RecordSet",
        "@id": name,
        "name": name,
        "description": (
            f"The `{name}` bucket: {bucket.records} chats licensed {bucket.license.value} "
            f"({bucket.license.url}). Bucket Content-Usage: `{bucket.content_usage or '(none)'}`; "
            "each row's `ai_use` is the member's own preference and prevails for that row."
        ),
        "key": {"@id": f"{name}/uid"},
        "field": fields,
    }


def _tombstone_record_set(*, federated: bool) -> dict[str, Any]:
    def column(key: str, description: str) -> dict[str, Any]:
        return {
            "@type": "cr:Field",
            "@id": f"tombstones/{key}",
            "name": key,
            "description": description,
            "dataType": "sc:Text",
            "source": {"fileObject": {"@id": "tombstones.jsonl"}, "extract": {"column": key}},
        }

    return {
        "@type": "cr:RecordSet",
        "@id": "tombstones",
        "name": "tombstones",
        "description": "Records withdrawn by their members: delete them from any copy you hold.",
        "key": {"@id": "tombstones/uid"},
        "field": (
            [
                column("origin", "The node id of the co-op the withdrawn record came from."),
                column("uid", "The uid of the withdrawn record."),
            ]
            if federated
            else [
                column("uid", "The uid of the withdrawn record."),
                column("reason", "Why it left (`withdrawn`, `rectified`, ...)."),
            ]
        ),
    }


def _description(summary: ReleaseSummary, coop: str) -> str:
    buckets = ", ".join(f"{b.name} ({b.license.value}, {b.records})" for b in summary.buckets if b.records)
    return (
        f"{summary.records} chats with AI assistants shared by members of the {coop} data co-op, "
        "each labelled good or fail by the person who had the conversation, with their ratings, notes "
        f"and corrections. One bucket per licence: {buckets or 'none'}. Each record carries its licence "
        "and its member's AI-use preference."
    )


def _cite_as(summary: ReleaseSummary, coop: str, published: datetime) -> str:
    key = "".join(ch if ch.isalnum() else "_" for ch in coop.lower()).strip("_") or "coop"
    return (
        f"@misc{{{key}_{summary.name}, title={{{coop} co-op chats, release {summary.name}}}, "
        f"author={{{{{coop}}}}}, year={{{published.year}}}}}"
    )


def _rai(summary: ReleaseSummary, coop: str, terms_version: str | None) -> dict[str, Any]:
    terms = f"the co-op's terms, version {terms_version}" if terms_version else "the co-op's terms"
    routes = ", ".join(f"`{c.value}`" for c in Channel)
    placeholders = ", ".join(t.placeholder for t in PiiType)
    return {
        "rai:dataCollection": (
            f"Members of the {coop} data co-op share their own conversations with AI assistants, one "
            f"chat at a time, each with explicit consent under {terms}. Chats arrive by the node's "
            f"intake routes ({routes}: the HTTP API, the command line, the web form, and the Open WebUI "
            "'Share to co-op' action); each record's `route` names its route. The member labels the "
            "chat good or fail, may add ratings, notes, a correction and tags, and chooses the "
            "record's licence, AI-use preference and how to be credited. Only chats the member made "
            "public are released, after the co-op's checks."
        ),
        "rai:dataCollectionType": ["Self-reporting"],
        "rai:dataPreprocessingProtocol": [
            "Personal data found in the text is replaced by typed placeholders before a chat is "
            f"stored for release: {placeholders}. The counts per type are kept in each record's "
            "provenance.checks.pii.",
            "Chats are normalised to a list of messages (role, content, model, timestamp), whatever "
            "the format they arrived in (plain text, structured messages, Open WebUI exports).",
        ],
        "rai:dataAnnotationProtocol": [
            "Labels (good/fail), ratings, notes and corrections come from the member who had the "
            "conversation, not from hired annotators."
        ],
        "rai:personalSensitiveInformation": [
            "Conversations can contain personal or sensitive information typed by the member or "
            "produced by the model. Redaction replaces e-mail addresses, phone numbers, IPv4 and IPv6 "
            "addresses, payment card numbers, IBANs, US social security numbers, Ethereum and Bitcoin "
            "addresses, and self-introductions such as 'my name is ...' with typed placeholders; it is "
            "pattern-based and cannot catch everything (names mentioned in passing, health details).",
            "Contributors appear only as they chose: credited by username, with `contributor_hash` a "
            "salted HMAC of their account computed with a secret the node keeps; by pseudonym, with a "
            "hash of that pseudonym only (one per pseudonym); anonymously, with no name and no hash, so "
            "nothing links an anonymous record to the member's other records. No account ids, e-mail "
            "addresses or IP addresses of contributors are released.",
        ],
        "rai:dataUseCases": [
            "Fine-tuning and preference learning from chats judged good or fail by the people who "
            "had them, and from their corrections.",
            "Evaluating assistants on real requests.",
            "Honour each record's licence (its bucket) and its `ai_use` preference: a record whose "
            "`ai_use` says train-ai=n must not be used to train AI models.",
        ],
        "rai:dataLimitations": [
            "Self-selected: members choose which chats to share, so the data is not a representative "
            "sample of anyone's use of AI.",
            "Each label is one person's judgement of their own conversation.",
            "Re-identifying contributors, or the people mentioned in a chat, is not allowed.",
        ],
        "rai:dataBiases": [
            "The chats reflect the co-op's members: their languages, interests and the assistants they use."
        ],
        "rai:dataReleaseMaintenancePlan": (
            f"Releases are numbered snapshots ({summary.name} is release {summary.version}, revision "
            f"{summary.revision}). Members can withdraw a record at any time: withdrawn records are left "
            "out of every later release, removed from the releases the co-op still serves (a new revision, "
            "with a signed statement in revisions/ naming them), and listed, by uid, in tombstones.jsonl "
            "(uid, reason, withdrawn_at). Copies downloaded before cannot be recalled: if you hold "
            "an earlier release or anything derived from it, delete the listed records; check the "
            "latest release's tombstones.jsonl whenever you update."
        ),
    }
