"""Cutting a release: an immutable snapshot of public records, one bucket per licence.

A release ``vN`` is written into a hidden temporary directory, streamed from
one read snapshot of the database (never the whole release in memory),
checksummed, fsynced, renamed into place, and only then recorded in the
database.  Serving trusts the database, so a release killed halfway is never
visible; the next cut removes its leftovers.

If a record left the published set (withdrawn, rectified) while the files
were being written, the cut starts again rather than publish it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Final

import msgspec
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from coop.governance import (
    AiUse,
    Audience,
    CollectiveState,
    Embargo,
    License,
    PolicyError,
    Preference,
    Scope,
    admit,
    disclose,
    parse_ai_use,
)
from coop.node.collective.repository import current_settings
from coop.node.contributions.repository import Stage, bump_stage
from coop.node.errors import BusyError, NotFoundError, StorageError
from coop.node.files import fsync_dir, fsync_file, sha256_file
from coop.node.intake.redaction import PiiType
from coop.node.members.attribution import PublicForms
from coop.node.peering.service import OWN_FACTS, mirror_facts, origin_states, own_facts, own_row_facts
from coop.node.policy import embargo_sql, own_state
from coop.node.releases.croissant import CROISSANT, build_croissant, croissant_bytes
from coop.node.releases.tombstones import federated_tombstones, public_tombstones
from coop.node.storage.store import Store

__all__ = [
    "BucketSummary",
    "FileEntry",
    "ReleaseSummary",
    "bucket_content_usage",
    "cut_federated_release",
    "cut_release",
    "federated_schema",
    "get_federated_release",
    "get_release",
    "list_federated_releases",
    "list_releases",
    "record_schema",
    "robots_txt",
]

_FLUSH_BYTES: Final = 16 * 1024 * 1024
_ROW_GROUP: Final = 65_536
_MAX_ATTEMPTS: Final = 3


class FileEntry(msgspec.Struct, frozen=True):
    path: str
    sha256: str
    bytes: int


class BucketSummary(msgspec.Struct, frozen=True):
    name: str
    license: License
    records: int
    content_usage: str
    labels: dict[str, int]
    languages: dict[str, int]
    files: tuple[FileEntry, ...]


class ReleaseSummary(msgspec.Struct, frozen=True):
    version: int
    name: str
    coop: str
    node_id: str
    created_at: int
    records: int
    buckets: tuple[BucketSummary, ...]
    tombstones: int
    files: tuple[FileEntry, ...]
    origins: tuple[str, ...] = ()  # a federated release: the co-ops whose records it combines
    # 1 as cut; each rewrite that removes withdrawn records (coop.node.releases.revision) adds one.
    revision: int = 1

    def bucket(self, name: str) -> BucketSummary | None:
        return next((b for b in self.buckets if b.name == name), None)

    @property
    def label(self) -> str:
        """``vN`` as cut, ``vN-rK`` from revision K on: its folder on disk and its tag in channels.

        The URL stays ``/releases/vN/...`` whatever the revision.
        """
        return self.name if self.revision <= 1 else f"{self.name}-r{self.revision}"


_SUMMARY_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_SUMMARY_DECODER: Final = msgspec.json.Decoder(ReleaseSummary)


def record_schema() -> pa.Schema:
    """The Parquet schema of a record (the same fields as the JSONL lines)."""
    message = pa.struct(
        [
            ("role", pa.string()),
            ("content", pa.string()),
            ("model", pa.string()),
            ("timestamp", pa.int64()),
        ]
    )
    feedback = pa.struct(
        [
            ("message_index", pa.int64()),
            ("rating", pa.int64()),
            ("reason", pa.string()),
            ("comment", pa.string()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    pii = pa.struct([(kind.value, pa.int64()) for kind in PiiType])
    return pa.schema(
        [
            ("uid", pa.string()),
            ("type", pa.string()),
            ("created_at", pa.int64()),
            ("route", pa.string()),
            ("model", pa.string()),
            ("models", pa.list_(pa.string())),
            ("content", pa.list_(message)),
            ("feedback", pa.list_(feedback)),
            ("label", pa.string()),
            ("note", pa.string()),
            ("correction", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("language", pa.string()),
            ("license", pa.string()),
            ("ai_use", pa.string()),
            ("eval", pa.string()),
            ("attribution", pa.struct([("mode", pa.string()), ("name", pa.string())])),
            ("contributor_hash", pa.string()),
            ("scope", pa.string()),
            (
                "provenance",
                pa.struct(
                    [
                        ("source", pa.string()),
                        ("prompt_shown", pa.bool_()),
                        ("format", pa.string()),
                        ("checks", pa.struct([("pii", pii), ("content_sha256", pa.string())])),
                    ]
                ),
            ),
        ]
    )


def bucket_content_usage(preferences: list[str]) -> str:
    """The Content-Usage of a bucket: the most restrictive of its records' preferences.

    A label is ``y`` only if every record says ``y``; ``n`` if any says ``n``
    (keeping a CC signal only when every refusal carries the same one);
    otherwise the bucket states nothing for it.  Each row keeps its own
    ``ai_use`` too.
    """
    parsed = [parse_ai_use(p).value for p in preferences]
    out: dict[str, Preference] = {}
    for attr in ("train_ai", "search"):
        prefs = [getattr(p, attr) for p in parsed]
        refusals = [p for p in prefs if p is not None and not p.allow]
        if refusals:
            signals = {p.exceptions for p in refusals}
            out[attr] = Preference(allow=False, exceptions=signals.pop() if len(signals) == 1 else None)
        elif prefs and all(p is not None for p in prefs):
            out[attr] = Preference(allow=True)
    return AiUse(train_ai=out.get("train_ai"), search=out.get("search")).to_header()


class _HashingWriter:
    """A binary file that hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _file_entry(root: Path, path: Path) -> FileEntry:
    return FileEntry(
        path=path.relative_to(root).as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size
    )


class _BucketWriter:
    """One bucket's JSONL and Parquet files, written as records stream by, with its statistics."""

    def __init__(self, out: Path, licence: License, schema: pa.Schema) -> None:
        self.out = out
        self.licence = licence
        folder = out / licence.bucket
        folder.mkdir()
        self.jsonl = _HashingWriter(folder / "data.jsonl")
        self.parquet_path = folder / "data.parquet"
        self.parquet = pq.ParquetWriter(self.parquet_path, schema, compression="zstd")
        self.parse_options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.count = 0
        self.labels: dict[str, int] = {}
        self.languages: dict[str, int] = {}
        self.preferences: set[str] = set()

    def add(self, data: bytes, *, label: str, language: str, ai_use: str) -> None:
        line = data + b"\n"
        self.jsonl.write(line)
        self.pending.append(line)
        self.pending_size += len(line)
        self.count += 1
        self.labels[label] = self.labels.get(label, 0) + 1
        self.languages[language] = self.languages.get(language, 0) + 1
        self.preferences.add(ai_use)
        if self.pending_size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        block = b"".join(self.pending)
        table = pa_json.read_json(
            io.BytesIO(block),
            read_options=pa_json.ReadOptions(block_size=max(len(block), 1 << 20)),
            parse_options=self.parse_options,
        )
        self.parquet.write_table(table, row_group_size=_ROW_GROUP)
        self.pending.clear()
        self.pending_size = 0

    def close(self) -> BucketSummary:
        try:
            self._flush()
        finally:
            self.parquet.close()
            self.jsonl.close()
        fsync_file(self.parquet_path)
        name = self.licence.bucket
        files = (
            FileEntry(path=f"{name}/data.jsonl", sha256=self.jsonl.digest.hexdigest(), bytes=self.jsonl.size),
            _file_entry(self.out, self.parquet_path),
        )
        return BucketSummary(
            name=name,
            license=self.licence,
            records=self.count,
            content_usage=bucket_content_usage(sorted(self.preferences)),
            labels=dict(sorted(self.labels.items())),
            languages=dict(sorted(self.languages.items())),
            files=files,
        )

    def abort(self) -> None:
        self.parquet.close()
        self.jsonl.file.close()


_TERMS: Final = (
    "These chats were shared by members of the {coop} data co-op under their own licences and AI-use "
    "preferences. To use them you agree: not to try to re-identify anyone, contributor or person "
    "mentioned; to honour each record's licence and its ai_use preference (train-ai=n means no AI "
    "training); and to delete records listed as withdrawn in tombstones.jsonl from any copy you hold."
)
_GATE_REID: Final = "I will not try to re-identify contributors or anyone mentioned in the chats"
_GATE_HONOUR: Final = "I will honour each record's licence and AI-use preference"
_GATE_WITHDRAW: Final = "I will delete withdrawn records (tombstones.jsonl) from my copies"


def _card(summary: ReleaseSummary) -> str:
    """The dataset card: YAML metadata (one `configs` entry per bucket) and plain words."""
    buckets = [b for b in summary.buckets if b.records]
    languages = sorted({lang for b in buckets for lang in b.languages if lang != "unknown"})
    lines = ["---", f"pretty_name: {_yaml_str(summary.coop + ' co-op chats')}"]
    licences = [b.license.value.lower() for b in buckets] or ["other"]
    lines.append("license:")
    lines += [f"- {lic}" for lic in licences]
    if languages:
        lines.append("language:")
        lines += [f"- {_yaml_str(lang)}" for lang in languages]
    lines += ["tags:", "- chat", "- human-feedback", "- data-co-op"]
    # The dataset terms, as Hugging Face's gated access shows them (and anyone reading the card).
    lines += [
        f"extra_gated_prompt: {_yaml_str(_TERMS.format(coop=summary.coop))}",
        "extra_gated_fields:",
        f"  {_yaml_str(_GATE_REID)}: checkbox",
        f"  {_yaml_str(_GATE_HONOUR)}: checkbox",
        f"  {_yaml_str(_GATE_WITHDRAW)}: checkbox",
        "  Affiliation: text",
    ]
    if buckets:
        lines.append("configs:")
        for index, bucket in enumerate(buckets):
            lines += [
                f"- config_name: {bucket.name}",
                "  data_files:",
                "  - split: train",
                f"    path: {bucket.name}/*.parquet",
            ]
            if index == 0:
                lines.append("  default: true")
    lines.append("---")
    title = f"federated release {summary.name}" if summary.origins else f"release {summary.name}"
    if summary.revision > 1:
        title += f", revision {summary.revision}"
    lines += [
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
        "`SHA256SUMS` covers every file (`sha256sum -c SHA256SUMS`). `croissant.json` describes",
        "the release in MLCommons Croissant 1.1 (with its responsible-AI fields) for tools that",
        "read it; where the co-op publishes `release.dsse.json`, it is the release summary with",
        "every file's SHA-256, signed by the co-op's Ed25519 key.",
        "",
    ]
    return "\n".join(lines)


def robots_txt(coop: str, releases: list[ReleaseSummary], *, fallback: str, disallow: tuple[str, ...]) -> str:
    """``robots.txt`` with the AI-use preferences: the site's overall, then each bucket's own."""
    lines = [f"# {coop}: a Co-op Flywheel node", "User-Agent: *"]
    lines += [f"Disallow: {path}" for path in disallow]
    lines.append("Allow: /releases/")
    usages = [b.content_usage for r in releases for b in r.buckets if b.content_usage]
    lines.append(f"Content-Usage: {bucket_content_usage(usages) if usages else fallback}")
    for release in releases:
        for bucket in release.buckets:
            if bucket.content_usage:
                lines.append(f"Content-Usage: /releases/{release.name}/{bucket.name}/ {bucket.content_usage}")
    return "\n".join(lines) + "\n"


def _yaml_str(value: str) -> str:
    return msgspec.json.encode(value).decode()


class _Selection(msgspec.Struct, frozen=True):
    """Which rows a release holds, fixed inside its read snapshot."""

    tick: int
    settings_version: int
    released: str  # SQL condition: every row in the release
    params: tuple[object, ...]  # for ``released``
    # What this cut admits (the commit marks them): public records it releases for the first
    # time, and federation-scope records it lets the co-ops of the federation have.
    public: tuple[int, ...] = ()
    federation: tuple[int, ...] = ()


def _embargo_condition(embargo: Embargo) -> tuple[str, tuple[object, ...]]:
    return embargo_sql(embargo, language="language", tags="tags")


def _month_start(now: int) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def _select(conn: sqlite3.Connection, *, now: int) -> _Selection:
    """Decide what the release holds and what the cut admits.

    The release holds the public records released before that are outside today's
    embargo, and the public records this cut admits.  The cut admits accepted public
    and federation-scope records alike, as the disclosure policy's :func:`admit` says
    (no freeze, no embargo), the earliest first, within the monthly volume cap counted
    over both: the federation receives exactly what the co-op's own gates let through.
    """
    (tick,) = conn.execute("SELECT n FROM ticks WHERE id = 1").fetchone()
    view = current_settings(conn)
    settings = view.settings
    if settings.quality_freeze:
        raise PolicyError("the quality freeze is on: no release until it is lifted", field="quality_freeze")
    state = CollectiveState(embargo=settings.embargo, quality_freeze=settings.quality_freeze)
    cap = settings.volume_cap.monthly_records
    remaining: int | None = None
    if cap is not None:
        (used,) = conn.execute(
            "SELECT coalesce(sum(new_records), 0) FROM releases WHERE created_at >= ?", (_month_start(now),)
        ).fetchone()
        remaining = max(cap - int(used), 0)
    public: list[int] = []
    federation: list[int] = []
    if remaining != 0:
        # The row's columns are all admission reads (never the record's bytes: a second pass
        # over every record would double the cut); the form is applied when the files are written.
        candidates = conn.execute(
            f"SELECT c.seq, {OWN_FACTS} FROM contributions c"
            " WHERE c.state = 'accepted' AND c.admitted_in IS NULL AND c.scope IN ('public', 'federation')"
            " ORDER BY c.seq"
        )
        for seq, *row in candidates:
            # Admission never depends on how the member is credited: the row's columns suffice.
            facts = own_row_facts(row)
            if not admit(facts, state):
                continue
            (public if facts.scope is Scope.PUBLIC else federation).append(int(seq))
            if remaining is not None and len(public) + len(federation) >= remaining:
                break
    embargo, params = _embargo_condition(settings.embargo)
    released = (
        f"((state = 'released' AND scope = 'public'{embargo}) OR seq IN (SELECT value FROM json_each(?)))"
    )
    return _Selection(
        tick=int(tick),
        settings_version=view.version,
        released=released,
        params=(*params, _json_seqs(public)),
        public=tuple(public),
        federation=tuple(federation),
    )


def _json_seqs(seqs: tuple[int, ...] | list[int]) -> str:
    """Row numbers as one JSON array parameter (``seq IN (SELECT value FROM json_each(?))``)."""
    return msgspec.json.encode(seqs).decode()


def _write_release(
    conn: sqlite3.Connection, tmp: Path, *, version: int, coop: str, node_id: str, now: int
) -> tuple[ReleaseSummary, _Selection]:
    """Write every artifact from one read snapshot; return the summary and what it selected."""
    schema = record_schema()
    conn.execute("BEGIN")
    try:
        selection = _select(conn, now=now)
        # One pass in table order (no sort, no second scan), every bucket written side by side.
        writers: dict[str, _BucketWriter] = {}
        forms = PublicForms.load(conn)  # each row as the policy lets it out (no member link)
        rows = conn.execute(
            "SELECT license, label, coalesce(language, 'unknown'), ai_use,"
            " (SELECT record FROM contents WHERE contents.seq = contributions.seq)"
            f" FROM contributions NOT INDEXED WHERE {selection.released} ORDER BY seq",
            selection.params,
        )
        try:
            for licence_text, label, language, ai_use, data in rows:
                writer = writers.get(licence_text)
                if writer is None:
                    writer = writers[licence_text] = _BucketWriter(tmp, License(licence_text), schema)
                writer.add(forms.apply(bytes(data)), label=label, language=language, ai_use=ai_use)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        buckets = [writers[licence.value].close() for licence in License if licence.value in writers]
        tombstones = _HashingWriter(tmp / "tombstones.jsonl")
        encoder = msgspec.json.Encoder(order="sorted")
        n_tomb = 0
        # Only records this audience held before: public ones a cut admitted (the policy decides).
        for item in public_tombstones(conn):
            tombstones.write(encoder.encode(item) + b"\n")
            n_tomb += 1
        tombstones.close()
    finally:
        conn.execute("COMMIT")
    summary = ReleaseSummary(
        version=version,
        name=f"v{version}",
        coop=coop,
        node_id=node_id,
        created_at=now,
        records=sum(b.records for b in buckets),
        buckets=tuple(buckets),
        tombstones=n_tomb,
        files=(),
    )
    return _finish(tmp, summary), selection


def _finish(tmp: Path, summary: ReleaseSummary) -> ReleaseSummary:
    """Summary, card, Croissant metadata and checksums beside the bucket files; all synced to disk."""
    (tmp / "release.json").write_bytes(_SUMMARY_ENCODER.encode(summary))
    (tmp / "README.md").write_text(_card(summary), encoding="utf-8")
    entries = [f for b in summary.buckets for f in b.files]
    entries += [_file_entry(tmp, tmp / name) for name in ("README.md", "release.json", "tombstones.jsonl")]
    (tmp / CROISSANT).write_bytes(croissant_bytes(build_croissant(summary, entries)))
    entries.append(_file_entry(tmp, tmp / CROISSANT))
    entries.sort(key=lambda e: e.path)
    sums = "".join(f"{e.sha256}  {e.path}\n" for e in entries)
    (tmp / "SHA256SUMS").write_text(sums, encoding="ascii")
    for name in ("README.md", "release.json", CROISSANT, "SHA256SUMS"):
        fsync_file(tmp / name)
    for bucket in summary.buckets:
        fsync_dir(tmp / bucket.name)
    fsync_dir(tmp)
    return msgspec.structs.replace(summary, files=tuple(entries))


def _commit_release(
    conn: sqlite3.Connection, *, summary: ReleaseSummary, selection: _Selection, now: int
) -> bool:
    """Record the release if nothing it holds changed meanwhile (records or settings)."""
    moved = conn.execute(
        "SELECT 1 FROM contributions WHERE left_tick > ? LIMIT 1", (selection.tick,)
    ).fetchone()
    if moved is not None or current_settings(conn).version != selection.settings_version:
        return False
    # Exactly the rows the snapshot selected (still accepted: any that left moved the tick).
    public, federation = _json_seqs(selection.public), _json_seqs(selection.federation)
    chosen = "state = 'accepted' AND admitted_in IS NULL AND seq IN (SELECT value FROM json_each(?))"
    for channel, n in conn.execute(
        f"SELECT channel, count(*) FROM contributions WHERE {chosen} GROUP BY channel", (public,)
    ).fetchall():
        bump_stage(conn, now=now, channel=channel, stage=Stage.PUBLISHED, n=n)
    marked = conn.execute(
        f"UPDATE contributions SET state = 'released', released_in = ?, admitted_in = ? WHERE {chosen}",
        (summary.version, summary.version, public),
    ).rowcount
    # Federation scope stays 'accepted' (never public); admitted, the next manifest lists it.
    marked += conn.execute(
        f"UPDATE contributions SET admitted_in = ? WHERE {chosen}", (summary.version, federation)
    ).rowcount
    # new_records counts both: the monthly cap holds over everything that leaves the co-op.
    conn.execute(
        "INSERT INTO releases (version, created_at, record_count, summary, new_records) VALUES (?, ?, ?, ?, ?)",
        (summary.version, now, summary.records, _SUMMARY_ENCODER.encode(summary), marked),
    )
    return True


def cut_release(store: Store, releases: Path, *, coop: str, node_id: str, now: int) -> ReleaseSummary:
    """Cut the next release; the caller holds the release lock."""
    for _ in range(_MAX_ATTEMPTS):
        version = store.read(_latest_version) + 1
        _clear_leftovers(releases, version)
        tmp = releases / f".v{version}.tmp"
        tmp.mkdir(parents=True)
        try:
            summary, selection = _write_release(
                store.reader(), tmp, version=version, coop=coop, node_id=node_id, now=now
            )
            final = releases / summary.name
            tmp.rename(final)
            fsync_dir(releases)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if store.write(partial(_commit_release, summary=summary, selection=selection, now=now)):
            return summary
        shutil.rmtree(final, ignore_errors=True)  # records or settings moved meanwhile: cut again
    raise BusyError("records kept changing while the release was written; try again")


def _latest_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM releases").fetchone()
    return int(version)


def _clear_leftovers(releases: Path, version: int) -> None:
    """Remove what a killed cut left: temp folders and folders the database never recorded."""
    if not releases.exists():
        raise StorageError(f"{releases} is missing")
    for path in releases.iterdir():
        if (path.name.startswith(".v") and path.name.endswith(".tmp")) or (
            path.name.startswith("v") and path.name[1:].isdigit() and int(path.name[1:]) >= version
        ):
            shutil.rmtree(path, ignore_errors=True)


def list_releases(conn: sqlite3.Connection) -> list[ReleaseSummary]:
    rows = conn.execute("SELECT summary FROM releases ORDER BY version").fetchall()
    return [_SUMMARY_DECODER.decode(row[0]) for row in rows]


def get_release(conn: sqlite3.Connection, version: int) -> ReleaseSummary:
    row = conn.execute("SELECT summary FROM releases WHERE version = ?", (version,)).fetchone()
    if row is None:
        raise NotFoundError(f"no release v{version}", field="version")
    return _SUMMARY_DECODER.decode(row[0])


class _Stats(msgspec.Struct):
    label: str
    ai_use: str
    language: str | None = None


_STATS: Final = msgspec.json.Decoder(_Stats)


def federated_schema() -> pa.Schema:
    return record_schema().append(pa.field("origin", pa.string()))


def cut_federated_release(
    store: Store, releases: Path, *, coop: str, node_id: str, now: int
) -> ReleaseSummary:
    """A release combining this co-op's published records with the public records it mirrors.

    Each row keeps its ``origin`` (the node id of the co-op it came from), its licence and
    its AI-use preference; buckets stay per licence, so ShareAlike never mixes.  A forked
    origin contributes nothing.  Written like any release: hidden folder, checksums, rename.
    """
    folder = releases / "federated"
    folder.mkdir(mode=0o700, exist_ok=True)
    version = (
        store.read(
            lambda c: int(c.execute("SELECT coalesce(max(version), 0) FROM federated_releases").fetchone()[0])
        )
        + 1
    )
    _clear_leftovers(folder, version)
    tmp = folder / f".v{version}.tmp"
    tmp.mkdir()
    schema = federated_schema()
    conn = store.reader()
    origins: set[str] = set()
    try:
        conn.execute("BEGIN")
        try:
            settings = current_settings(conn).settings
            mine = own_state(settings)
            # The SQL narrows to released public rows outside the embargo; the policy decides each.
            embargo, params = _embargo_condition(settings.embargo)
            own = conn.execute(
                f"SELECT c.license, c.label, coalesce(c.language, 'unknown'), c.ai_use, t.record, {OWN_FACTS}"
                " FROM contributions c NOT INDEXED JOIN contents t ON t.seq = c.seq"
                f" WHERE c.state = 'released' AND c.scope = 'public'{embargo} ORDER BY c.seq",
                params,
            )
            writers: dict[str, _BucketWriter] = {}
            forms = PublicForms.load(conn)  # each row as the policy lets it out (no member link)

            def add(origin: str, licence: str, data: bytes, label: str, language: str, ai_use: str) -> None:
                writer = writers.get(licence)
                if writer is None:
                    writer = writers[licence] = _BucketWriter(tmp, License(licence), schema)
                origins.add(origin)
                writer.add(
                    b'{"origin":"%s",' % origin.encode() + forms.apply(data)[1:],
                    label=label,
                    language=language,
                    ai_use=ai_use,
                )

            for licence, label, language, ai_use, data, *fact_row in own:
                if data is None:
                    continue
                facts = own_facts(fact_row, data)
                if facts is None or not disclose(facts, mine, Audience.FEDERATED):
                    continue  # the freeze, for one: a federated release re-publishes nothing then
                add(node_id, licence, bytes(data), label, language, ai_use)
            mirrored = _republishable(conn)
            for origin, licence, data in mirrored:
                stats = _STATS.decode(data)
                add(origin, licence, bytes(data), stats.label, stats.language or "unknown", stats.ai_use)
            buckets = [writers[licence.value].close() for licence in License if licence.value in writers]
            tombstones = _HashingWriter(tmp / "tombstones.jsonl")
            encoder = msgspec.json.Encoder(order="sorted")
            count = 0
            # Each (origin, uid) once, and only records that were public there (the policy decides).
            for origin, uid in federated_tombstones(conn, node_id):
                tombstones.write(encoder.encode({"origin": origin, "uid": uid}) + b"\n")
                count += 1
            tombstones.close()
        finally:
            conn.execute("COMMIT")
        summary = ReleaseSummary(
            version=version,
            name=f"v{version}",
            coop=coop,
            node_id=node_id,
            created_at=now,
            records=sum(b.records for b in buckets),
            buckets=tuple(buckets),
            tombstones=count,
            files=(),
            origins=tuple(sorted(origins)),
        )
        summary = _finish(tmp, summary)
        final = folder / summary.name
        tmp.rename(final)
        fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.write(
        lambda c: c.execute(
            "INSERT INTO federated_releases (version, created_at, record_count, summary) VALUES (?, ?, ?, ?)",
            (version, now, summary.records, _SUMMARY_ENCODER.encode(summary)),
        )
    )
    return summary


def _republishable(conn: sqlite3.Connection) -> Iterator[tuple[str, str, bytes]]:
    """Mirrored records a federated release may re-publish, as the disclosure policy says
    under each origin's latest manifest: public scope only (federation scope is never
    public), nothing while the origin is forked or frozen, nothing its embargo covers."""
    states = origin_states(conn)
    rows = conn.execute(
        "SELECT origin, license, record, uid, license, ai_use, eval, scope FROM mirror_records ORDER BY origin, uid"
    )
    for origin, _, data, *row in rows:
        state = states.get(origin)
        # Scope and licence are the record's own (its bytes), never a relabelling peer's.
        facts = mirror_facts(origin, row, bytes(data))
        if state is not None and facts is not None and disclose(facts, state, Audience.FEDERATED):
            yield origin, facts.license.value, bytes(data)


def list_federated_releases(conn: sqlite3.Connection) -> list[ReleaseSummary]:
    rows = conn.execute("SELECT summary FROM federated_releases ORDER BY version").fetchall()
    return [_SUMMARY_DECODER.decode(row[0]) for row in rows]


def get_federated_release(conn: sqlite3.Connection, version: int) -> ReleaseSummary:
    row = conn.execute("SELECT summary FROM federated_releases WHERE version = ?", (version,)).fetchone()
    if row is None:
        raise NotFoundError(f"no federated release v{version}", field="version")
    return _SUMMARY_DECODER.decode(row[0])
