"""Signed evaluation reports a co-op's admin published: stored as signed, shown as consent allows.

An admin publishes a report the co-op received (``coop eval publish``, ``POST
/api/v1/admin/eval/reports``); the node verifies it as ``coop eval verify``
does (every signature, and the metrics recomputed with the task's evaluator)
and refuses one that does not verify, naming its problems.  The bytes are kept
exactly as signed in ``eval_reports``; publishing and unpublishing are audited.
What the pages and ``GET /api/v1/eval/reports`` show is
:func:`coop.eval.consent_view`: each co-op's consent, stamped in its
attestation, decides; the signed bytes are offered only when every co-op in
the report said ``named``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from coop.eval import (
    EvalError,
    PublishedView,
    Report,
    ReportCheck,
    consent_view,
    get_evaluator,
    verify_report,
)
from coop.eval.report import REPORT_TYPE
from coop.governance import GovernanceError, Signer, sha256_hex
from coop.governance.envelope import open_envelope
from coop.node.collective.audit import AuditAction, audit
from coop.node.errors import ConflictError, InputError, NotFoundError, PayloadTooLargeError
from coop.node.storage.store import Store

__all__ = ["MAX_REPORT_BYTES", "EvalReports", "check_report"]

MAX_REPORT_BYTES: Final = 16 * 1024 * 1024  # what verify_report reads at most
_REPORT: Final = msgspec.json.Decoder(Report)
_MIN_PREFIX: Final = 8


def check_report(data: bytes) -> ReportCheck:
    """Verify a report with its task's evaluator (metrics recomputed); an unknown task is a problem."""
    opened = _opened(data)
    if opened is None:
        return verify_report(data)  # it names why the bytes are no report
    task = opened.task
    try:
        evaluator = get_evaluator(task)
    except EvalError:
        return ReportCheck(
            problems=(f"the task {task[:60]!r} is not one this node knows: its metrics cannot be checked",)
        )
    return verify_report(data, finalize=evaluator.finalize, schema=evaluator.statistic_sensitivity().keys())


class EvalReports:
    """The node's published eval reports: publish, unpublish, list (consent-filtered), download."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        known: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.store = store
        self.clock = clock
        self.signer = signer
        # Node id -> name of this co-op and its pinned peers: the keys whose numbers it vouches for.
        self.known = known

    def publish(self, data: bytes, *, actor: str) -> PublishedView:
        """Verify and store ``data`` (the signed report's bytes); InputError names what fails."""
        if len(data) > MAX_REPORT_BYTES:
            raise PayloadTooLargeError(f"a report is at most {MAX_REPORT_BYTES} bytes", field="report")
        check = check_report(data)
        if not check or check.report is None:
            problems = "; ".join(check.problems) or "not a report"
            raise InputError(f"the report does not verify: {problems}", field="report")
        report = check.report
        known = self.known()
        strangers = sorted(
            a.node_id for a in report.answers if a.attestation is not None and a.node_id not in known
        )
        if strangers:
            # Anyone can make a key and sign numbers under any co-op name: the page shows only
            # numbers signed by keys this co-op knows (its own, its pinned peers').
            raise InputError(
                f"the report holds numbers signed by {', '.join(k[:16] for k in strangers)}, neither this"
                " co-op nor a pinned peer: pin it first (coop peers add) to publish its numbers",
                field="report",
            )
        digest = sha256_hex(data)
        now = self.clock()
        signer = self.signer()

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT published_at FROM eval_reports WHERE hash = ?", (digest,)).fetchone()
            if row is not None:
                return int(row[0])  # published before: the same bytes, nothing to record again
            for other, stored in conn.execute("SELECT hash, report FROM eval_reports"):
                earlier = _opened(bytes(stored))
                if earlier is not None and earlier.request_hash == report.request_hash:
                    # Two reports of one request that differ by one co-op's answer (a requester can
                    # always drop one as "no answer") would give that co-op's numbers by subtraction.
                    raise ConflictError(
                        f"a report of the same request is published ({str(other)[:16]}): unpublish it"
                        " first; one report per request is shown",
                        field="report",
                    )
            conn.execute(
                "INSERT INTO eval_reports (hash, report, task, model_sha256, published_at, published_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (digest, data, report.task, report.model_sha256, now, actor),
            )
            audit(
                conn,
                signer=signer,
                at=now,
                actor=actor,
                action=AuditAction.EVAL_PUBLISHED,
                payload={"report": digest, "task": report.task, "model_sha256": report.model_sha256},
            )
            return now

        published_at = self.store.write(write)
        return consent_view(report, digest=digest, published_at=published_at, names=known)

    def unpublish(self, prefix: str, *, actor: str) -> str:
        """Remove a published report (its hash, or a prefix of 8 or more digits); returns its hash."""
        prefix = prefix.strip().lower().removesuffix(".json")
        if len(prefix) < _MIN_PREFIX:
            raise InputError(f"name the report by its hash ({_MIN_PREFIX} digits at least)", field="HASH")
        now = self.clock()
        signer = self.signer()

        def write(conn: sqlite3.Connection) -> str:
            rows = conn.execute(
                "SELECT hash FROM eval_reports WHERE substr(hash, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
            if len(rows) != 1:
                what = "no published report" if not rows else "more than one published report"
                raise NotFoundError(f"{what} has the hash {prefix}", field="HASH")
            digest = str(rows[0][0])
            conn.execute("DELETE FROM eval_reports WHERE hash = ?", (digest,))
            audit(
                conn,
                signer=signer,
                at=now,
                actor=actor,
                action=AuditAction.EVAL_UNPUBLISHED,
                payload={"report": digest},
            )
            return digest

        return self.store.write(write)

    def listing(self) -> list[PublishedView]:
        """Every published report, newest first, as each co-op's consent allows."""
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT hash, report, published_at FROM eval_reports ORDER BY published_at DESC, hash"
            ).fetchall()
        )
        views = []
        names = self.known()
        for digest, data, published_at in rows:
            report = _opened(bytes(data))
            if report is not None:
                views.append(
                    consent_view(report, digest=str(digest), published_at=int(published_at), names=names)
                )
        return views

    def download(self, digest: str) -> bytes:
        """The signed bytes, only when every co-op in the report consented to be named."""
        row = self.store.read(
            lambda c: c.execute("SELECT report FROM eval_reports WHERE hash = ?", (digest,)).fetchone()
        )
        report = None if row is None else _opened(bytes(row[0]))
        if row is None or report is None or not consent_view(report, digest=digest).downloadable:
            # A report some co-op did not consent to show whole is answered like a missing one.
            raise NotFoundError(f"no downloadable eval report {digest[:64]}", field="hash")
        return bytes(row[0])


def _opened(data: bytes) -> Report | None:
    """A report's content, unverified (stored ones were verified when published); None if unreadable."""
    try:
        _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=MAX_REPORT_BYTES)
        return _REPORT.decode(payload)
    except (
        GovernanceError,
        msgspec.DecodeError,
        msgspec.ValidationError,
        UnicodeDecodeError,
        RecursionError,
    ):
        return None
