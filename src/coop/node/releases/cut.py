"""Cutting a release: an immutable snapshot of records, one bucket per licence, signed once.

One :func:`cut` makes both kinds of release, the node's own (``releases/vN``)
and its federated ones (``releases/federated/vN``); a
:class:`~coop.node.releases.sources.RecordSource` says what differs (which
rows, which schema, which table records it).  A release is written into a
hidden temporary folder, streamed from one read snapshot of the database
(never the whole release in memory), checksummed, given its dataset card,
Croissant metadata and signed statement, fsynced, renamed into place, and only
then recorded in the database.  Serving trusts the database, so a release killed
halfway is never visible; the next cut removes its leftovers.

If a record left the published set (withdrawn, rectified) while the files
were being written, the cut starts again rather than publish it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from coop.governance import JointRules, Signer
from coop.node.errors import BusyError, StorageError
from coop.node.files import fsync_dir, fsync_file
from coop.node.policy import NO_JOINT
from coop.node.releases.card import CARD, dataset_card
from coop.node.releases.croissant import CROISSANT, build_croissant, croissant_bytes
from coop.node.releases.model import SUMMARY_ENCODER, ReleaseSummary
from coop.node.releases.repository import latest_version
from coop.node.releases.sources import FederatedRecords, OwnRecords, RecordSource
from coop.node.releases.statement import write_statement
from coop.node.releases.writers import Buckets, HashingWriter, file_entry
from coop.node.storage.store import Store

__all__ = ["cut", "cut_federated_release", "cut_release", "finish_release"]

_MAX_ATTEMPTS: Final = 3
S = TypeVar("S")


def cut(
    store: Store,
    releases: Path,
    source: RecordSource[S],
    *,
    coop: str,
    node_id: str,
    now: int,
    signer: Signer,
    progress: Callable[[str], None] | None = None,
) -> ReleaseSummary:
    """Cut the next release of ``source`` into its folder under ``releases``; the caller holds
    the release lock.  ``progress`` hears each phase and a count every 50,000 records."""
    say = progress or (lambda _line: None)
    root = releases / source.folder if source.folder else releases
    for _ in range(_MAX_ATTEMPTS):
        version = store.read(partial(latest_version, table=source.table)) + 1
        _clear_leftovers(root, version)
        tmp = root / f".v{version}.tmp"
        tmp.mkdir(parents=True)
        try:
            say(f"writing v{version}…")
            summary, selected = _write(
                store.reader(),
                tmp,
                source,
                version=version,
                coop=coop,
                node_id=node_id,
                now=now,
                progress=progress,
            )
            say(f"{summary.records:,} records in {len(summary.buckets)} buckets; checksums and metadata…")
            summary = finish_release(tmp, summary)
            write_statement(tmp, summary, signer)  # signed once, here: every exit serves these bytes
            say("statement signed")
            final = root / summary.name
            tmp.rename(final)
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if store.write(partial(source.commit, summary=summary, selected=selected, now=now)):
            return summary
        say("records changed while writing; cutting again")
        shutil.rmtree(final, ignore_errors=True)  # records or settings moved meanwhile: cut again
    raise BusyError("records kept changing while the release was written; try again")


def cut_release(
    store: Store,
    releases: Path,
    *,
    coop: str,
    node_id: str,
    now: int,
    signer: Signer,
    progress: Callable[[str], None] | None = None,
    joint: JointRules = NO_JOINT,
) -> ReleaseSummary:
    """Cut the node's next release ``vN``; the caller holds the release lock.  ``joint``: what the
    joint actions binding the co-op demand now (a freeze refuses the cut)."""
    source = OwnRecords(joint)
    return cut(store, releases, source, coop=coop, node_id=node_id, now=now, signer=signer, progress=progress)


def cut_federated_release(
    store: Store,
    releases: Path,
    *,
    coop: str,
    node_id: str,
    now: int,
    signer: Signer,
    progress: Callable[[str], None] | None = None,
    joint: JointRules = NO_JOINT,
    origins: Mapping[str, JointRules] | None = None,
) -> ReleaseSummary:
    """A release combining this co-op's published records with the public records it mirrors.

    Each row keeps its ``origin``, its licence and its AI-use preference; buckets stay per
    licence, so ShareAlike never mixes.  Written like any release: hidden folder, checksums,
    statement, rename.
    """
    (releases / FederatedRecords.folder).mkdir(mode=0o700, exist_ok=True)
    source = FederatedRecords(node_id, joint, origins)
    return cut(store, releases, source, coop=coop, node_id=node_id, now=now, signer=signer, progress=progress)


def _write(
    conn: sqlite3.Connection,
    tmp: Path,
    source: RecordSource[S],
    *,
    version: int,
    coop: str,
    node_id: str,
    now: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[ReleaseSummary, S]:
    """Write the buckets and the tombstones from one read snapshot; the summary and what it selected."""
    conn.execute("BEGIN")
    try:
        buckets = Buckets(tmp, source.schema(), progress=progress)
        try:
            selected = source.fill(conn, buckets, now=now)
        except BaseException:
            buckets.abort()
            raise
        written = buckets.close()
        tombstones = HashingWriter(tmp / "tombstones.jsonl")
        encoder = msgspec.json.Encoder(order="sorted")
        count = 0
        for item in source.tombstones(conn):
            tombstones.write(encoder.encode(item) + b"\n")
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
        records=sum(b.records for b in written),
        buckets=tuple(written),
        tombstones=count,
        files=(),
        origins=tuple(sorted(buckets.origins)),
    )
    return summary, selected


def finish_release(tmp: Path, summary: ReleaseSummary) -> ReleaseSummary:
    """Summary, card, Croissant metadata and checksums beside the bucket files; all synced to disk."""
    (tmp / "release.json").write_bytes(SUMMARY_ENCODER.encode(summary))
    (tmp / CARD).write_text(dataset_card(summary), encoding="utf-8")
    entries = [f for b in summary.buckets for f in b.files]
    entries += [file_entry(tmp, tmp / name) for name in (CARD, "release.json", "tombstones.jsonl")]
    (tmp / CROISSANT).write_bytes(croissant_bytes(build_croissant(summary, entries)))
    entries.append(file_entry(tmp, tmp / CROISSANT))
    entries.sort(key=lambda e: e.path)
    sums = "".join(f"{e.sha256}  {e.path}\n" for e in entries)
    (tmp / "SHA256SUMS").write_text(sums, encoding="ascii")
    for name in (CARD, "release.json", CROISSANT, "SHA256SUMS"):
        fsync_file(tmp / name)
    for bucket in summary.buckets:
        fsync_dir(tmp / bucket.name)
    fsync_dir(tmp)
    return msgspec.structs.replace(summary, files=tuple(entries))


def _clear_leftovers(releases: Path, version: int) -> None:
    """Remove what a killed cut left: temp folders and folders the database never recorded."""
    if not releases.exists():
        raise StorageError(f"{releases} is missing")
    for path in releases.iterdir():
        if (path.name.startswith(".v") and path.name.endswith(".tmp")) or (
            path.name.startswith("v") and path.name[1:].isdigit() and int(path.name[1:]) >= version
        ):
            shutil.rmtree(path, ignore_errors=True)
