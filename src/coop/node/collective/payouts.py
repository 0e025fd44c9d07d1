"""Payouts for a release: read its records from the immutable files, compute, store, audit.

A release is paid once.  A second payout for it is refused unless it explicitly
supersedes the standing one, with a reason: both are kept, the old one marked
superseded, and the audit log records ``payout.supersede`` naming the old payout,
the new one and the reason.  (A unique index on the standing payout of each release
holds the rule even against a second process.)
"""

from __future__ import annotations

import os
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from coop.governance import (
    Attribution,
    AttributionMode,
    Audience,
    CollectiveState,
    EvalConsent,
    Identifier,
    License,
    LineKind,
    PayoutLedger,
    PayoutRecord,
    RecordFacts,
    RecordKind,
    RecordState,
    Scope,
    Signer,
    canonical_bytes,
    disclose,
    payee_for,
    record_kind,
    regroup,
    sha256_hex,
)
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import InputError, StateError

__all__ = [
    "MAX_REASON_CHARS",
    "PayoutView",
    "list_payouts",
    "member_ledger",
    "payout_members",
    "record_member_ledger",
    "record_payout",
    "release_payout_records",
    "split_ledger",
    "standing_payout",
    "write_ledger_files",
]

MAX_REASON_CHARS: Final = 2000
_PAIR: Final = "\x1f"  # joins (member, public name) while computing: no name holds it (printable only)


class _Row(msgspec.Struct):
    """The fields of a released record that decide who is paid and how much it weighs."""

    uid: str
    label: str
    attribution: Attribution
    note: str | None = None
    correction: str | None = None
    feedback: list[msgspec.Raw] = msgspec.field(default_factory=list)


_ROW: Final = msgspec.json.Decoder(_Row)
_LEDGER_STATE: Final = CollectiveState()  # a payout pays what a release published (a snapshot)


class PayoutView(msgspec.Struct, frozen=True, kw_only=True):
    """A stored payout; ``supersedes``/``superseded_by`` link a replaced payout and its replacement."""

    id: int
    release: str
    at: int
    actor: str
    digest: str
    ledger: PayoutLedger
    supersedes: int | None = None
    superseded_by: int | None = None
    supersede_reason: str | None = None


_PAYOUT_COLUMNS: Final = "id, release, at, actor, digest, ledger, supersedes, superseded_by, supersede_reason"


def _view(row: tuple[Any, ...]) -> PayoutView:
    pid, release, at, actor, digest, ledger, supersedes, superseded_by, reason = row
    return PayoutView(
        id=pid,
        release=f"v{release}",
        at=at,
        actor=actor,
        digest=digest,
        ledger=msgspec.json.decode(ledger, type=PayoutLedger),
        supersedes=supersedes,
        superseded_by=superseded_by,
        supersede_reason=reason,
    )


def standing_payout(conn: sqlite3.Connection, version: int) -> PayoutView | None:
    """The payout that stands for release ``version`` (none superseded it), if it was paid."""
    row = conn.execute(
        f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE release = ? AND superseded_by IS NULL", (version,)
    ).fetchone()
    return None if row is None else _view(row)


def removed_since_cut(conn: sqlite3.Connection, *, version: int, cut_at: int) -> list[str]:
    """Records release ``version`` held when it was cut (at ``cut_at``) and that were withdrawn
    (or rectified) since.

    A revision takes them out of the files (see :mod:`coop.node.releases.revision`); a payout still
    counts them as the release's, withdrawn, paid nothing.
    """
    rows = conn.execute(
        "SELECT uid FROM contributions WHERE released_in IS NOT NULL AND released_in <= ?"
        " AND scope = 'public' AND withdrawn_at IS NOT NULL AND withdrawn_at >= ? ORDER BY seq",
        (version, cut_at),
    ).fetchall()
    return [str(uid) for (uid,) in rows]


def release_payout_records(
    root: Path,
    buckets: Iterable[tuple[str, License]],
    withdrawn: set[str],
    member_of: Mapping[str, str],
    removed: Iterable[str] = (),
) -> Iterator[PayoutRecord]:
    """Every record of the release in folder ``root`` (its ``buckets``: name and licence) as a
    payout sees it; withdrawn since then are marked so.

    Each is paid under the pair (member, public name): ``member_of`` maps a uid to the
    member's handle (the node's own link; the release files carry none for anonymous
    records).  :func:`split_ledger` turns the result into the public and internal ledgers.
    ``removed`` are records a revision took out of the files since the cut (withdrawn).
    """
    seen: set[str] = set()
    for record in _file_records(root, buckets, withdrawn, member_of):
        seen.add(record.uid)
        yield record
    anonymous = payee_for(AttributionMode.ANONYMOUS.value, None)
    for uid in removed:
        if uid not in seen:
            # Paid nothing and named nowhere: only counted among the withdrawn.
            yield PayoutRecord(
                uid=uid, payee=f"{anonymous}{_PAIR}{anonymous}", kind=RecordKind.GOOD, withdrawn=True
            )


def _file_records(
    root: Path, buckets: Iterable[tuple[str, License]], withdrawn: set[str], member_of: Mapping[str, str]
) -> Iterator[PayoutRecord]:
    for bucket, licence in buckets:
        with (root / bucket / "data.jsonl").open("rb") as handle:
            for line in handle:
                row = _ROW.decode(line)
                gone = row.uid in withdrawn
                facts = RecordFacts(
                    uid=row.uid,
                    scope=Scope.PUBLIC,
                    license=licence,
                    ai_use="",
                    eval=EvalConsent.NO,
                    attribution=row.attribution.mode,
                    state=RecordState.WITHDRAWN if gone else RecordState.RELEASED,
                    admitted=True,
                )
                # The public ledger names only what the policy lets a public page name.
                shown = disclose(facts, _LEDGER_STATE, Audience.PUBLIC, snapshot=True).identifier
                if shown in (Identifier.MEMBER, Identifier.PSEUDONYM) and row.attribution.name:
                    public = payee_for(row.attribution.mode.value, row.attribution.name)
                else:
                    public = payee_for(AttributionMode.ANONYMOUS.value, None)
                yield PayoutRecord(
                    uid=row.uid,
                    payee=f"{member_of.get(row.uid, public)}{_PAIR}{public}",
                    kind=record_kind(row.label, bool(row.correction), bool(row.note or row.feedback)),
                    withdrawn=gone,
                )


def payout_members(conn: sqlite3.Connection) -> dict[str, str]:
    """uid -> the handle of the member who contributed it, for every record ever released."""
    rows = conn.execute(
        "SELECT c.uid, m.name FROM contributions c JOIN members m ON m.id = c.member_id"
        " WHERE c.released_in IS NOT NULL"
    )
    return dict(rows.fetchall())


def split_ledger(ledger: PayoutLedger) -> tuple[PayoutLedger, PayoutLedger]:
    """(public, internal) ledgers from one computed per (member, public name).

    The public ledger shows only what each member chose: a handle, a pseudonym, or one line
    for all anonymous records together; the internal one pays each member, and never leaves
    the node but to its admins and to the member (their own line).  Both sum exactly.
    """
    pairs = [line.payee for line in ledger.lines if line.kind is LineKind.CONTRIBUTOR]
    public = regroup(ledger, {pair: pair.split(_PAIR, 1)[1] for pair in pairs})
    internal = regroup(ledger, {pair: pair.split(_PAIR, 1)[0] for pair in pairs})
    return public, internal


def record_member_ledger(conn: sqlite3.Connection, *, payout: int, ledger: PayoutLedger) -> None:
    """Keep the internal (per member) ledger of a payout beside it, in the same transaction."""
    conn.execute(
        "INSERT INTO payout_members (payout, ledger, digest) VALUES (?, ?, ?)",
        (payout, canonical_bytes(ledger), sha256_hex(canonical_bytes(ledger))),
    )


def member_ledger(conn: sqlite3.Connection, payout: int) -> PayoutLedger | None:
    """The internal (per member) ledger of a payout, if it has one (payouts before it had none)."""
    row = conn.execute("SELECT ledger FROM payout_members WHERE payout = ?", (payout,)).fetchone()
    return None if row is None else msgspec.json.decode(row[0], type=PayoutLedger)


def record_payout(
    conn: sqlite3.Connection,
    *,
    ledger: PayoutLedger,
    version: int,
    actor: str,
    at: int,
    signer: Signer,
    supersede: str | None = None,
) -> PayoutView:
    """Store and audit a payout; refuse a second one for the release unless ``supersede`` says why.

    Call inside the write transaction: the check and the insert are one step.
    """
    reason = None if supersede is None else supersede.strip()
    if reason is not None:
        # Trimmed of invisible characters too (controls, zero-width and bidi marks, any space):
        # a reason with nothing visible in it says nothing.
        seen = [i for i, c in enumerate(reason) if unicodedata.category(c)[0] not in "CZ"]
        reason = reason[seen[0] : seen[-1] + 1] if seen else ""
    if reason is not None and not 1 <= len(reason) <= MAX_REASON_CHARS:
        raise InputError(
            f"say in 1 to {MAX_REASON_CHARS} characters why the payout is replaced", field="supersede"
        )
    old = standing_payout(conn, version)
    if old is not None and reason is None:
        raise StateError(
            f"release v{version} was already paid (payout {old.id}: {old.ledger.amount} {old.ledger.currency});"
            " to replace that payout, supersede it and say why"
            ' (coop payouts ... --supersede REASON, or "supersede" in the request)',
            field="release",
        )
    if old is None and reason is not None:
        raise StateError(f"release v{version} has no payout to supersede", field="supersede")
    digest = sha256_hex(canonical_bytes(ledger))
    (new_id,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM payouts").fetchone()
    if old is not None:
        # Mark the old payout first: the unique index allows one standing payout per release.
        conn.execute("UPDATE payouts SET superseded_by = ? WHERE id = ?", (new_id, old.id))
    conn.execute(
        "INSERT INTO payouts (id, release, at, actor, currency, amount, ledger, digest, supersedes,"
        " supersede_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id,
            version,
            at,
            actor,
            ledger.currency,
            ledger.amount,
            canonical_bytes(ledger),
            digest,
            None if old is None else old.id,
            reason,
        ),
    )
    if old is not None:
        audit(
            conn,
            signer=signer,
            at=at,
            actor=actor,
            action=AuditAction.PAYOUT_SUPERSEDE,
            payload={
                "release": ledger.release,
                "superseded": old.id,
                "superseded_ledger_sha256": old.digest,
                "payout": new_id,
                "reason": reason,
            },
        )
    audit(
        conn,
        signer=signer,
        at=at,
        actor=actor,
        action=AuditAction.PAYOUT_COMPUTED,
        payload={
            "payout": new_id,
            "release": ledger.release,
            "amount": ledger.amount,
            "currency": ledger.currency,
            "lines": len(ledger.lines),
            "ledger_sha256": digest,
            **({} if old is None else {"supersedes": old.id}),
        },
    )
    return PayoutView(
        id=new_id,
        release=ledger.release,
        at=at,
        actor=actor,
        digest=digest,
        ledger=ledger,
        supersedes=None if old is None else old.id,
        supersede_reason=reason,
    )


def list_payouts(conn: sqlite3.Connection) -> list[PayoutView]:
    rows = conn.execute(f"SELECT {_PAYOUT_COLUMNS} FROM payouts ORDER BY id").fetchall()
    return [_view(row) for row in rows]


def write_ledger_files(
    folder: Path, view: PayoutView, members: PayoutLedger | None = None
) -> tuple[Path, Path]:
    """The (public) ledger as CSV and JSON next to the data, each written whole or not at all.

    ``members``, the internal per-member ledger, goes to ``members/`` beside it: it names
    who is behind anonymous and pseudonymous lines, so it is for the co-op's admins only.
    """
    folder.mkdir(mode=0o700, exist_ok=True)
    stem = folder / f"payout-{view.id}-{view.release}"
    paths = (stem.with_suffix(".csv"), stem.with_suffix(".json"))
    files = [
        (paths[0], view.ledger.to_csv().encode()),
        (paths[1], msgspec.json.format(msgspec.json.encode(view), indent=2)),
    ]
    if members is not None:
        (folder / "members").mkdir(mode=0o700, exist_ok=True)
        inner = folder / "members" / stem.name
        files += [
            (inner.with_suffix(".csv"), members.to_csv().encode()),
            (inner.with_suffix(".json"), msgspec.json.format(msgspec.json.encode(members), indent=2)),
        ]
    for path, data in files:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return paths
