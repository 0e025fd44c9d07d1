"""Payouts for a release: read its records from the immutable files, compute, store, audit."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from coop.governance import (
    Attribution,
    PayoutLedger,
    PayoutRecord,
    canonical_bytes,
    payee_for,
    record_kind,
    sha256_hex,
)
from coop.node.collective import audit
from coop.node.release import ReleaseSummary

__all__ = ["PayoutView", "list_payouts", "record_payout", "release_payout_records", "write_ledger_files"]


class _Row(msgspec.Struct):
    """The fields of a released record that decide who is paid and how much it weighs."""

    uid: str
    label: str
    attribution: Attribution
    contributor_hash: str
    note: str | None = None
    correction: str | None = None
    feedback: list[msgspec.Raw] = msgspec.field(default_factory=list)


_ROW: Final = msgspec.json.Decoder(_Row)


class PayoutView(msgspec.Struct, frozen=True):
    id: int
    release: str
    at: int
    actor: str
    digest: str
    ledger: PayoutLedger


def release_payout_records(
    root: Path, summary: ReleaseSummary, withdrawn: set[str]
) -> Iterator[PayoutRecord]:
    """Every record of the release as a payout sees it; withdrawn since then are marked so."""
    for bucket in summary.buckets:
        with (root / bucket.name / "data.jsonl").open("rb") as handle:
            for line in handle:
                row = _ROW.decode(line)
                yield PayoutRecord(
                    uid=row.uid,
                    payee=payee_for(row.attribution.mode.value, row.attribution.name, row.contributor_hash),
                    kind=record_kind(row.label, bool(row.correction), bool(row.note or row.feedback)),
                    withdrawn=row.uid in withdrawn,
                )


def record_payout(
    conn: sqlite3.Connection, *, ledger: PayoutLedger, version: int, actor: str, at: int, seed: bytes
) -> PayoutView:
    digest = sha256_hex(canonical_bytes(ledger))
    cur = conn.execute(
        "INSERT INTO payouts (release, at, actor, currency, amount, ledger, digest) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (version, at, actor, ledger.currency, ledger.amount, canonical_bytes(ledger), digest),
    )
    assert cur.lastrowid is not None
    audit(
        conn,
        seed=seed,
        at=at,
        actor=actor,
        action="payout.computed",
        payload={
            "payout": cur.lastrowid,
            "release": ledger.release,
            "amount": ledger.amount,
            "currency": ledger.currency,
            "lines": len(ledger.lines),
            "ledger_sha256": digest,
        },
    )
    return PayoutView(
        id=cur.lastrowid, release=ledger.release, at=at, actor=actor, digest=digest, ledger=ledger
    )


def list_payouts(conn: sqlite3.Connection) -> list[PayoutView]:
    rows = conn.execute("SELECT id, release, at, actor, digest, ledger FROM payouts ORDER BY id").fetchall()
    return [
        PayoutView(
            id=row[0],
            release=f"v{row[1]}",
            at=row[2],
            actor=row[3],
            digest=row[4],
            ledger=msgspec.json.decode(row[5], type=PayoutLedger),
        )
        for row in rows
    ]


def write_ledger_files(folder: Path, view: PayoutView) -> tuple[Path, Path]:
    """The ledger as CSV and JSON next to the data, each written whole or not at all."""
    folder.mkdir(mode=0o700, exist_ok=True)
    stem = folder / f"payout-{view.id}-{view.release}"
    paths = (stem.with_suffix(".csv"), stem.with_suffix(".json"))
    for path, data in zip(
        paths,
        (view.ledger.to_csv().encode(), msgspec.json.format(msgspec.json.encode(view), indent=2)),
        strict=True,
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return paths
