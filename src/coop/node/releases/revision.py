"""Revising the releases a node still serves: withdrawn records out, the same name, the next revision.

A withdrawal (or a rectification) erases a record at once and excludes it
from every future release; this module takes it out of the releases already
cut that the node keeps serving, its own (``releases/vN``) and its federated
ones (``releases/federated/vN``), and out of mirrored records withdrawn at
their origin (a peer's tombstone).  Each affected release gets a new
**revision**: the bucket files without the withdrawn rows (JSONL and Parquet),
a new ``release.json`` (``revision: K``), dataset card, ``croissant.json`` and
``SHA256SUMS``, and ``revisions/rK.dsse.json``, a statement signed by the
node's Ed25519 key (DSSE, like ``release.dsse.json``) naming the records removed
and why, and every changed file's old and new SHA-256.  The release keeps its
name and URL (``/releases/vN/...``); a channel publishes it as ``vN-rK``.

What is pending is the database's own state: a tombstone whose ``revised_at``
is NULL (set in the withdrawal's own transaction by being inserted).  So a
crash before or during a revision loses nothing: the next run, at the next
start at the latest, does it again.

The order that keeps serving consistent (serving reads the release's row, then
opens the folder the row names: ``summary.label``):

1. the new revision is written in a hidden ``.vN-rK.tmp`` folder beside the
   old one (unchanged files hard-linked), fsynced, renamed to ``vN-rK``;
2. one transaction points the release's row at it (compare-and-set on the old
   summary), and records what the tombstone lists need to know;
3. only then is the old folder removed.

Killed before 2, the row still names the old folder, whole; the next run
removes the unreferenced new one and starts again.  Killed after 2, the row
names the new folder, whole; the next run removes the old one.  Never a mix.
Copies downloaded before a revision cannot be recalled: the statement names
what their holders must delete.

Longer than ~500 lines on purpose: the rewrite of a served release (own or federated), its
signed statement and its crash recovery are one procedure that must be read whole.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Final

import msgspec

from coop.governance import (
    Audience,
    CollectiveState,
    Reason,
    Signer,
    disclose,
)
from coop.governance.canonical import canonical_bytes
from coop.governance.envelope import seal
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import NodeError
from coop.node.files import fsync_dir, fsync_file, sha256_file
from coop.node.members.attribution import PublicForms
from coop.node.releases.cut import finish_release
from coop.node.releases.model import (
    SUMMARY_DECODER,
    SUMMARY_ENCODER,
    BucketSummary,
    FileEntry,
    ReleaseSummary,
)
from coop.node.releases.revision_statement import (
    REASONS,
    REVISION_PAYLOAD_TYPE,
    REVISIONS_DIR,
    Removed,
    revision_statement,
    row_choices,
)
from coop.node.releases.statement import write_statement
from coop.node.releases.tombstones import own_tombstone_facts, peer_tombstone_facts
from coop.node.releases.writers import BucketWriter, federated_schema, record_schema
from coop.node.storage.store import Store

__all__ = [
    "REFORM_STEP",
    "Reform",
    "RevisedRelease",
    "RevisionReport",
    "clear_revision_leftovers",
    "reform_pending",
    "reform_releases",
    "revise_releases",
    "revision_pending",
    "withheld",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_AT_ORIGIN: Final = "withdrawn by the member at its origin co-op"
_REFORMED: Final = (
    "contributor identifiers taken off anonymous and pseudonymous records (they linked them to the"
    " member's other records)"
)
_REFORMED_NOTICE: Final = (
    "No record was removed: rows were rewritten so that anonymous records carry no identifier and a "
    "pseudonymous record only its pseudonym's own. Copies downloaded before cannot be recalled: if you "
    "hold one, replace it with this revision."
)
REFORM_STEP: Final = "reform-releases"
_REVISION_FOLDER: Final = re.compile(r"^v(\d+)-r(\d+)$")
_REVISION_TMP: Final = re.compile(r"^\.v(\d+)-r(\d+)\.tmp$")
_CUT_FOLDER: Final = re.compile(r"^v(\d+)$")
_ANY_STATE: Final = CollectiveState()
_CHUNK: Final = 500
_FEW_UIDS: Final = 8  # up to this many, a byte search per uid beats one pass over every "uid" field
_UID_FIELD: Final = re.compile(rb'"uid"\s*:\s*"([^"\\]*)"')
_ESCAPED: Final = re.compile(rb'["\\\x00-\x1f]')  # a uid JSON stores escaped


class RevisedRelease(msgspec.Struct, frozen=True):
    release: str
    federated: bool
    revision: int
    removed: int


class RevisionReport(msgspec.Struct, frozen=True):
    revised: tuple[RevisedRelease, ...] = ()
    tombstones: int = 0  # pending tombstones handled by this run

    def __bool__(self) -> bool:
        return bool(self.revised or self.tombstones)


class _Key(msgspec.Struct):
    uid: str
    origin: str | None = None


class _Row(msgspec.Struct):
    uid: str
    label: str
    ai_use: str
    origin: str | None = None
    language: str | None = None


_KEY: Final = msgspec.json.Decoder(_Key)
_ROW: Final = msgspec.json.Decoder(_Row)

# A row of a release: (origin, uid); origin "" in the node's own releases.
_RowKey = tuple[str, str]


class _Stored(msgspec.Struct, frozen=True):
    """A release as its row stores it: the exact summary bytes (for compare-and-set) and decoded."""

    raw: bytes
    summary: ReleaseSummary


def _stored(conn: sqlite3.Connection, table: str) -> list[_Stored]:
    rows = conn.execute(f"SELECT summary FROM {table} ORDER BY version").fetchall()
    return [_Stored(bytes(raw), SUMMARY_DECODER.decode(raw)) for (raw,) in rows]


class _Pending(msgspec.Struct, frozen=True):
    own: dict[str, tuple[str, int | None]]  # uid -> (reason, released_in)
    peers: set[tuple[str, str]]  # (origin, uid)


def _pending(conn: sqlite3.Connection) -> _Pending:
    own = {
        uid: (reason, None if released is None else int(released))
        for uid, reason, released in conn.execute(
            "SELECT t.uid, t.reason, c.released_in FROM tombstones t"
            " LEFT JOIN contributions c ON c.uid = t.uid WHERE t.revised_at IS NULL"
        )
    }
    peers = {
        (str(o), str(u))
        for o, u in conn.execute("SELECT origin, uid FROM fed_tombstones WHERE revised_at IS NULL")
    }
    return _Pending(own=own, peers=peers)


def revision_pending(conn: sqlite3.Connection) -> bool:
    """Is any tombstone still waiting for the served releases to be revised? (Two indexed lookups.)"""
    return bool(
        conn.execute("SELECT 1 FROM tombstones WHERE revised_at IS NULL LIMIT 1").fetchone()
        or conn.execute("SELECT 1 FROM fed_tombstones WHERE revised_at IS NULL LIMIT 1").fetchone()
    )


def withheld(conn: sqlite3.Connection, summary: ReleaseSummary, *, federated: bool) -> Reason | None:
    """Why a release's bucket files must not be served now, or None to serve them.

    Between a withdrawal's commit and the revision that takes the record out
    (seconds; longer only if revising fails), the files of a release that may
    hold it are refused: the policy says withdrawn content goes nowhere, and
    serving the snapshot does not change that.
    """
    audience = Audience.FEDERATED if federated else Audience.PUBLIC
    # Own records: in the releases from the one that first released them on (any federated one).
    newest = 2**62 if federated else summary.version
    if not federated or summary.node_id in summary.origins:
        for uid, scope, licence, ai_use, consent, released_in in conn.execute(
            "SELECT t.uid, c.scope, c.license, c.ai_use, c.eval, c.released_in FROM tombstones t"
            " JOIN contributions c ON c.uid = t.uid"
            " WHERE t.revised_at IS NULL AND c.released_in IS NOT NULL AND c.released_in <= ?",
            (newest,),
        ):
            facts = own_tombstone_facts(
                uid, scope=scope, license=licence, ai_use=ai_use, eval=consent, released_in=released_in
            )
            answer = disclose(facts, _ANY_STATE, audience, snapshot=True)
            if not answer:
                return answer.reason
    if federated:
        origins = set(summary.origins)
        for origin, uid in conn.execute("SELECT origin, uid FROM fed_tombstones WHERE revised_at IS NULL"):
            if origin not in origins:
                continue
            answer = disclose(peer_tombstone_facts(origin, uid), _ANY_STATE, audience, snapshot=True)
            if not answer:
                return answer.reason
    return None


def revise_releases(
    store: Store, releases: Path, *, signer: Signer, node_id: str, now: int
) -> RevisionReport:
    """Revise every served release holding a record a pending tombstone names; the caller holds
    the release lock (cuts and revisions never run side by side)."""
    federated_root = releases / "federated"
    pending = store.read(_pending)
    if not pending.own and not pending.peers:
        return RevisionReport()
    # A run killed midway left its tombstones pending (they are marked last): clean up after it.
    clear_revision_leftovers(store, releases)
    revised: list[RevisedRelease] = []
    # This co-op's own releases: a record is in the releases from the one that first released it on.
    for stored in store.read(lambda c: _stored(c, "releases")):
        version = stored.summary.version
        drop = {
            ("", uid): REASONS.get(reason, reason)
            for uid, (reason, released_in) in pending.own.items()
            if released_in is not None and released_in <= version
        }
        done = _revise_one(store, releases, stored, drop, federated=False, signer=signer, now=now)
        if done is not None:
            revised.append(done)
    # Federated releases: this co-op's released records and the peers' mirrored ones.
    fed_drop: dict[_RowKey, str] = {
        (node_id, uid): REASONS.get(reason, reason)
        for uid, (reason, released_in) in pending.own.items()
        if released_in is not None
    }
    fed_drop.update({key: _AT_ORIGIN for key in pending.peers})
    if federated_root.is_dir():
        for stored in store.read(lambda c: _stored(c, "federated_releases")):
            origins = set(stored.summary.origins)
            drop = {key: why for key, why in fed_drop.items() if key[0] in origins}
            done = _revise_one(store, federated_root, stored, drop, federated=True, signer=signer, now=now)
            if done is not None:
                revised.append(done)
    store.write(lambda c: _mark_revised(c, pending, now))
    return RevisionReport(revised=tuple(revised), tombstones=len(pending.own) + len(pending.peers))


def reform_pending(conn: sqlite3.Connection) -> bool:
    """Is the one-time revision of releases cut before anonymity was enforced still to run?"""
    return conn.execute("SELECT 1 FROM upgrade_steps WHERE name = ?", (REFORM_STEP,)).fetchone() is not None


def reform_releases(store: Store, releases: Path, *, signer: Signer, now: int) -> RevisionReport:
    """Once, after an upgrade: revise every served release whose rows are not in their public
    form (see :class:`Reform`), then strike the step off; the caller holds the release lock."""
    reform = Reform(store.read(PublicForms.load))
    revised: list[RevisedRelease] = []
    for table, root, federated in (
        ("releases", releases, False),
        ("federated_releases", releases / "federated", True),
    ):
        if not root.is_dir():
            continue
        for stored in store.read(lambda c, table=table: _stored(c, table)):  # type: ignore[misc]
            done = _revise_one(
                store, root, stored, {}, federated=federated, signer=signer, now=now, reform=reform
            )
            if done is not None:
                revised.append(done)
    store.write(lambda c: c.execute("DELETE FROM upgrade_steps WHERE name = ?", (REFORM_STEP,)))
    return RevisionReport(revised=tuple(revised))


def _mark_revised(conn: sqlite3.Connection, pending: _Pending, now: int) -> None:
    uids = sorted(pending.own)
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start : start + _CHUNK]
        conn.execute(
            f"UPDATE tombstones SET revised_at = ? WHERE revised_at IS NULL AND uid IN ({', '.join('?' * len(chunk))})",
            (now, *chunk),
        )
    conn.executemany(
        "UPDATE fed_tombstones SET revised_at = ? WHERE origin = ? AND uid = ? AND revised_at IS NULL",
        [(now, origin, uid) for origin, uid in sorted(pending.peers)],
    )


def _keys_in(path: Path, drop: dict[_RowKey, str], *, federated: bool) -> set[_RowKey]:
    """The rows of one JSONL file that ``drop`` names, reading only the lines that may hold one.

    A few uids are looked for one by one (a byte search each); a batch in one pass over the
    file's ``"uid"`` fields, so a file is read once whatever the number of withdrawals grouped.
    Each candidate line is decoded before it counts (a uid quoted in a message is no row of it).
    """
    if not drop or not path.is_file() or path.stat().st_size == 0:
        return set()
    uids = {uid.encode() for _, uid in drop}
    found: set[_RowKey] = set()
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:

        def check(at: int) -> int:
            """Decode the line holding byte ``at``; where the next line starts."""
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            if not data[start:end].strip():
                return end + 1
            key = _KEY.decode(data[start:end])
            row_key = ((key.origin or "") if federated else "", key.uid)
            if row_key in drop:
                found.add(row_key)
            return end + 1

        if any(_ESCAPED.search(uid) for uid in uids):  # stored escaped: every line is read
            at = 0
            while at < len(data):
                at = check(at)
        elif len(uids) <= _FEW_UIDS:
            for uid in uids:
                at = data.find(uid)
                while at >= 0:
                    at = data.find(uid, check(at))
        else:
            for match in _UID_FIELD.finditer(data):
                if match.group(1) in uids:
                    check(match.start())
    return found


def _link(source: Path, destination: Path) -> None:
    """An unchanged file of the old revision in the new one (a release's files are never modified)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)
        fsync_file(destination)


class Reform:
    """Rows of a release put in the form the disclosure policy lets out now (no member link on
    anonymous rows, no member hash on pseudonymous ones): :class:`PublicForms` over a release's
    lines, own (``{...}``) or federated (``{"origin":"<id>",...}``)."""

    def __init__(self, forms: PublicForms) -> None:
        self.forms = forms

    def apply(self, line: bytes, *, federated: bool) -> bytes:
        if not federated:
            return self.forms.apply(line)
        cut = line.find(b'",') + 2  # after the origin's id, which the row leads with
        if cut < 2:
            return line
        body = b"{" + line[cut:]
        public = self.forms.apply(body)
        return line if public is body else line[:cut] + public[1:]

    def rows_to_change(self, path: Path, *, federated: bool) -> bool:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            return any(
                self.apply(raw.rstrip(b"\n"), federated=federated) is not raw.rstrip(b"\n")
                for raw in handle
                if raw.strip()
            )


def _rewrite_bucket(
    old: Path,
    tmp: Path,
    bucket: BucketSummary,
    drop: set[_RowKey],
    *,
    federated: bool,
    reform: Reform | None = None,
) -> tuple[BucketSummary, list[Removed]]:
    """The bucket's JSONL and Parquet again, without the dropped rows (and each kept row in its
    public form, with ``reform``), through the cut's own writer."""
    writer = BucketWriter(tmp, bucket.license, federated_schema() if federated else record_schema())
    removed: list[Removed] = []
    try:
        with (old / bucket.name / "data.jsonl").open("rb") as handle:
            for raw in handle:
                line = raw.rstrip(b"\n")
                if not line:
                    continue
                row = _ROW.decode(line)
                key = ((row.origin or "") if federated else "", row.uid)
                if key in drop:
                    removed.append(Removed(key, line))
                    continue
                if reform is not None:
                    line = reform.apply(line, federated=federated)
                writer.add(line, label=row.label, language=row.language or "unknown", ai_use=row.ai_use)
    except BaseException:
        writer.abort()
        raise
    return writer.close(), removed


def _revise_one(
    store: Store,
    root: Path,
    stored: _Stored,
    drop: dict[_RowKey, str],
    *,
    federated: bool,
    signer: Signer,
    now: int,
    reform: Reform | None = None,
) -> RevisedRelease | None:
    """Revise one release if it holds a row ``drop`` names (or, with ``reform``, a row not in its
    public form); None when it holds none."""
    old = stored.summary
    folder = root / old.label
    if reform is not None:
        changing = {
            b.name
            for b in old.buckets
            if reform.rows_to_change(folder / b.name / "data.jsonl", federated=federated)
        }
        if not changing:
            return None
    elif not drop:
        return None
    else:
        changing = set()
    hits = {b.name: _keys_in(folder / b.name / "data.jsonl", drop, federated=federated) for b in old.buckets}
    if not any(hits.values()) and not changing:
        return None
    new_label = f"{old.name}-r{old.revision + 1}"
    tmp = root / f".{new_label}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        buckets: list[BucketSummary] = []
        removed: list[Removed] = []
        for bucket in old.buckets:
            if hits[bucket.name] or bucket.name in changing:
                fresh, gone = _rewrite_bucket(
                    folder, tmp, bucket, hits[bucket.name], federated=federated, reform=reform
                )
                buckets.append(fresh)
                removed += gone
            else:
                for entry in bucket.files:
                    _link(folder / entry.path, tmp / entry.path)
                buckets.append(bucket)
        _link(folder / "tombstones.jsonl", tmp / "tombstones.jsonl")
        earlier = [f for f in old.files if f.path.startswith(f"{REVISIONS_DIR}/")]
        for entry in earlier:
            _link(folder / entry.path, tmp / entry.path)
        revision = old.revision + 1
        summary = finish_release(
            tmp,
            msgspec.structs.replace(
                old,
                buckets=tuple(buckets),
                records=sum(b.records for b in buckets),
                revision=revision,
                files=(),
            ),
        )
        statement = revision_statement(old, summary, removed, drop, federated=federated, now=now)
        if reform is not None and not removed:
            statement = msgspec.structs.replace(statement, reason=_REFORMED, notice=_REFORMED_NOTICE)
        relative = f"{REVISIONS_DIR}/r{revision}.dsse.json"
        (tmp / REVISIONS_DIR).mkdir(exist_ok=True)
        (tmp / relative).write_bytes(seal(canonical_bytes(statement), REVISION_PAYLOAD_TYPE, [signer]))
        fsync_file(tmp / relative)
        entries = sorted(
            [*summary.files, *earlier, _entry(tmp, relative)],
            key=lambda e: e.path,
        )
        (tmp / "SHA256SUMS").write_text("".join(f"{e.sha256}  {e.path}\n" for e in entries), encoding="ascii")
        fsync_file(tmp / "SHA256SUMS")
        fsync_dir(tmp / REVISIONS_DIR)
        fsync_dir(tmp)
        summary = msgspec.structs.replace(summary, files=tuple(entries))
        write_statement(tmp, summary, signer)  # a revision is a new cut: its statement, signed here
        fsync_dir(tmp)
        final = root / summary.label
        shutil.rmtree(final, ignore_errors=True)  # an unreferenced leftover of a run that died
        tmp.rename(final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    scopes = [(r.key, row_choices(r).scope.value) for r in removed] if federated else []
    table = "federated_releases" if federated else "releases"

    def commit(conn: sqlite3.Connection) -> bool:
        moved = conn.execute(
            f"UPDATE {table} SET summary = ?, record_count = ? WHERE version = ? AND summary = ?",
            (SUMMARY_ENCODER.encode(summary), summary.records, summary.version, stored.raw),
        ).rowcount
        if moved != 1:
            return False
        # A peer's record this node published in a federated release: its tombstone may be named there.
        conn.executemany(
            "UPDATE fed_tombstones SET released_scope = ? WHERE origin = ? AND uid = ? AND released_scope IS NULL",
            [(scope, origin, uid) for (origin, uid), scope in scopes],
        )
        audit(
            conn,
            signer=signer,
            at=now,
            actor="system",
            action=AuditAction.RELEASE_REVISE,
            payload={
                "release": summary.name,
                "federated": federated,
                "revision": summary.revision,
                "removed": len(removed),
            },
        )
        return True

    if not store.write(commit):
        shutil.rmtree(final, ignore_errors=True)
        raise NodeError(f"release {old.name} changed while it was being revised; try again")
    # The row names the new folder now: the old one is served no more, and goes.
    shutil.rmtree(folder, ignore_errors=True)
    fsync_dir(root)
    return RevisedRelease(
        release=old.name, federated=federated, revision=summary.revision, removed=len(removed)
    )


def _entry(root: Path, relative: str) -> FileEntry:
    path = root / relative
    return FileEntry(path=relative, sha256=sha256_file(path), bytes=path.stat().st_size)


def clear_revision_leftovers(store: Store, releases: Path) -> list[Path]:
    """Remove what a killed revision left: temp folders, and revision folders no row names
    (a new one never committed, or an old one whose removal did not happen)."""
    removed: list[Path] = []
    for root, table in ((releases, "releases"), (releases / "federated", "federated_releases")):
        if not root.is_dir():
            continue
        labels = {s.summary.version: s.summary.label for s in store.read(partial(_stored, table=table))}
        for path in _stale(root.iterdir(), labels):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        if removed:
            fsync_dir(root)
    return removed


def _stale(children: Iterable[Path], labels: dict[int, str]) -> list[Path]:
    stale: list[Path] = []
    for path in children:
        name = path.name
        if _REVISION_TMP.match(name):
            stale.append(path)
            continue
        match = _REVISION_FOLDER.match(name) or _CUT_FOLDER.match(name)
        if match is None:
            continue
        version = int(match.group(1))
        # A folder of a release with no row is a cut's business (its own leftovers), not ours.
        if version in labels and labels[version] != name:
            stale.append(path)
    return stale
