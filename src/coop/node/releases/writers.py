"""Writing a release's files as records stream by: one JSONL and one Parquet file per licence bucket.

Each line is hashed as it is written (never read again to be hashed), the
Parquet file is written in row groups from blocks of those lines (each block
read back from the JSONL just written, so no bucket holds its lines in memory:
one block at a time, whatever the number of records or buckets), and each
bucket keeps its statistics (labels, languages, AI-use preferences) so the
summary needs no second pass.  Used by the cut and by revisions alike.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from coop.governance import License
from coop.node.files import fsync_file, sha256_file
from coop.node.intake.redaction import PiiType
from coop.node.releases.model import BucketSummary, FileEntry, bucket_content_usage

__all__ = [
    "BucketWriter",
    "Buckets",
    "HashingWriter",
    "federated_schema",
    "file_entry",
    "record_schema",
]

_FLUSH_BYTES: Final = 16 * 1024 * 1024  # JSONL bytes per Parquet row group (fixed: it shapes the file)
_ROW_GROUP: Final = 65_536
_FILE_BUFFER: Final = 1024 * 1024


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


def federated_schema() -> pa.Schema:
    """A federated release's rows: a record's fields and its ``origin`` (the co-op it came from)."""
    return record_schema().append(pa.field("origin", pa.string()))


@functools.cache
def arrow_pool() -> pa.MemoryPool:
    """The memory pool a release's Arrow work uses: jemalloc, which hands freed blocks back.

    Arrow's default (mimalloc) keeps what a 16 MiB block's parse used in per-thread heaps, some
    hundred MiB at the peak of a cut; jemalloc returns it (a cut's peak RSS goes down by about
    that much, the bytes written are the same).  The default where a build lacks jemalloc.
    """
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


class HashingWriter:
    """A binary file that hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("w+b", buffering=_FILE_BUFFER)  # w+: read back
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)

    def read_back(self, offset: int, size: int) -> bytes:
        """``size`` bytes written from ``offset`` on (from the page cache: they were just written)."""
        self.file.flush()
        data = os.pread(self.file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{self.path}: read {len(data)} of {size} bytes back at {offset}")
        return data

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def file_entry(root: Path, path: Path) -> FileEntry:
    return FileEntry(
        path=path.relative_to(root).as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size
    )


class BucketWriter:
    """One bucket's JSONL and Parquet files, written as records stream by, with its statistics."""

    def __init__(self, out: Path, licence: License, schema: pa.Schema) -> None:
        self.out = out
        self.licence = licence
        folder = out / licence.bucket
        folder.mkdir()
        self.jsonl = HashingWriter(folder / "data.jsonl")
        self.parquet_path = folder / "data.parquet"
        self.parquet = pq.ParquetWriter(
            self.parquet_path, schema, compression="zstd", memory_pool=arrow_pool()
        )
        self.parse_options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        # The lines not yet in the Parquet file are the JSONL's last ``pending_size`` bytes: read
        # back from the file at each flush, never held (one block in memory at a time, not one a bucket).
        self.pending_size = 0
        self.count = 0
        self.labels: dict[str, int] = {}
        self.languages: dict[str, int] = {}
        self.preferences: set[str] = set()

    def add(self, data: bytes, *, label: str, language: str, ai_use: str) -> None:
        self.jsonl.write(data)
        self.jsonl.write(b"\n")
        self.pending_size += len(data) + 1
        self.count += 1
        self.labels[label] = self.labels.get(label, 0) + 1
        self.languages[language] = self.languages.get(language, 0) + 1
        self.preferences.add(ai_use)
        if self.pending_size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending_size:
            return
        block = self.jsonl.read_back(self.jsonl.size - self.pending_size, self.pending_size)
        self.pending_size = 0
        table = pa_json.read_json(
            pa.BufferReader(block),
            read_options=pa_json.ReadOptions(block_size=max(len(block), 1 << 20)),
            parse_options=self.parse_options,
            memory_pool=arrow_pool(),
        )
        del block
        self.parquet.write_table(table, row_group_size=_ROW_GROUP)
        del table

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
            file_entry(self.out, self.parquet_path),
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


PROGRESS_EVERY: Final = 50_000  # records between two progress lines of a cut


class Buckets:
    """Every bucket of one release, opened as its first record arrives (one pass, side by side)."""

    def __init__(
        self, out: Path, schema: pa.Schema, *, progress: Callable[[str], None] | None = None
    ) -> None:
        self.out = out
        self.schema = schema
        self.writers: dict[str, BucketWriter] = {}
        self.origins: set[str] = set()  # a federated release: the co-ops its rows came from
        self.count = 0
        self._progress = progress

    def add(
        self, licence: str, data: bytes, *, label: str, language: str, ai_use: str, origin: str | None = None
    ) -> None:
        writer = self.writers.get(licence)
        if writer is None:
            writer = self.writers[licence] = BucketWriter(self.out, License(licence), self.schema)
        if origin is not None:
            self.origins.add(origin)
        writer.add(data, label=label, language=language, ai_use=ai_use)
        self.count += 1
        if self._progress is not None and self.count % PROGRESS_EVERY == 0:
            self._progress(f"{self.count:,} records written")

    def close(self) -> list[BucketSummary]:
        """The buckets' summaries, in licence order."""
        return [self.writers[licence.value].close() for licence in License if licence.value in self.writers]

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
