"""What a published evaluation report may show: each co-op's consent decides (pure, no I/O).

Every attestation carries the ``publication`` its co-op allowed when it signed
(``none`` | ``aggregate`` | ``named``; an attestation from before the field
counts as ``none``).  :func:`consent_view` turns a verified report into what a
leaderboard may show:

- a co-op's own numbers (records, metrics, noise) only when it said ``named``;
  every other co-op, and every co-op that declined (its reason may carry a
  count), appears as "a co-op (not named)";
- the aggregate only when every answering co-op said at least ``aggregate``,
  and not when exactly one answering co-op is unnamed: the aggregate minus the
  named co-ops' numbers would then be that co-op's numbers;
- the signed bytes themselves (which hold every attested number) only when
  every co-op in the report said ``named``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from coop.eval.report import Attestation, Noise, Report, peek_attestation
from coop.eval.request import MAX_REQUEST_BYTES, REQUEST_TYPE, EvalRequest
from coop.governance import GovernanceError, Publication
from coop.governance.envelope import open_envelope

__all__ = ["NOT_NAMED", "CoopResult", "PublishedView", "consent_view", "publication_of"]

NOT_NAMED: Final = "a co-op (not named)"
WITHHELD_CONSENT: Final = "aggregate withheld: not every co-op consents"
WITHHELD_ONE: Final = "aggregate withheld: it would reveal the numbers of the one co-op not named"
NONE_ANSWERED: Final = "no co-op answered"


class CoopResult(msgspec.Struct, frozen=True, kw_only=True):
    """One co-op's line: numbers only when it consented to be named."""

    label: str  # its name, or "a co-op (not named)"
    node_id: str | None = None  # only for a named co-op
    answered: bool
    records: int | None = None
    metrics: dict[str, str] | None = None
    noise: Noise | None = None
    declined: str | None = None  # the reason's code (never its detail, which may hold a count)


class PublishedView(msgspec.Struct, frozen=True, kw_only=True):
    """A published report as the public may see it."""

    hash: str  # sha256 of the signed report's bytes
    task: str
    model_name: str
    model_sha256: str
    purpose: str
    request_hash: str
    created_at: int
    signer: str
    coops: tuple[CoopResult, ...]
    aggregate_metrics: dict[str, str] | None = None
    aggregate_records: int | None = None
    aggregate_nodes: int = 0  # how many co-ops answered (never withheld: no number of theirs)
    aggregate_note: str = ""  # why the aggregate is withheld, when it is
    downloadable: bool = False  # every co-op said named: the signed bytes may be offered
    published_at: int = 0
    verify_hint: str = ""  # the command that checks the report offline

    @property
    def metric_names(self) -> list[str]:
        """Every metric shown (the aggregate's and the named co-ops'), in order."""
        names = set(self.aggregate_metrics or {})
        for coop in self.coops:
            names.update(coop.metrics or {})
        return sorted(names)


def publication_of(attestation: Attestation) -> Publication:
    """The consent an attestation carries; an unknown value counts as none."""
    try:
        return Publication(attestation.publication)
    except ValueError:
        return Publication.NONE


def _model_name(report: Report) -> str:
    try:
        _, payload = open_envelope(
            report.request.encode(), payload_type=REQUEST_TYPE, max_bytes=MAX_REQUEST_BYTES
        )
        return msgspec.json.decode(payload, type=EvalRequest).model_name
    except (GovernanceError, msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError):
        return ""


def consent_view(
    report: Report, *, digest: str, published_at: int = 0, names: Mapping[str, str] | None = None
) -> PublishedView:
    """What may be shown of a (verified) report, by each co-op's consent in its attestation.

    ``names`` (node id -> name) are the names the publishing node knows its own and its pinned
    peers' keys by; a named co-op is shown under that name rather than the one its attestation
    gives itself.
    """
    known = names or {}
    coops: list[CoopResult] = []
    consents: list[Publication] = []
    contributing_unnamed = 0  # unnamed co-ops whose records are in the aggregate
    trusted_nodes: list[str] = []
    all_named = True
    for answer in report.answers:
        attestation = peek_attestation(answer)
        if attestation is None:
            all_named = False
            reason = answer.decline.value if answer.decline is not None else "no_answer"
            coops.append(CoopResult(label=NOT_NAMED, answered=False, declined=reason))
            continue
        consent = publication_of(attestation)
        consents.append(consent)
        if consent is not Publication.NAMED:
            all_named = False
            contributing_unnamed += attestation.records > 0
            coops.append(CoopResult(label=NOT_NAMED, answered=True))
            continue
        trusted_nodes.append(answer.node_id)
        coops.append(
            CoopResult(
                label=known.get(answer.node_id) or attestation.coop or answer.node_id[:16],
                node_id=answer.node_id,
                answered=True,
                records=attestation.records,
                metrics=report.per_node.get(answer.node_id, {}),
                noise=attestation.noise,
            )
        )
    if not consents:
        note = NONE_ANSWERED
    elif any(c is Publication.NONE for c in consents):
        note = WITHHELD_CONSENT
    elif contributing_unnamed == 1:
        # The aggregate minus the named co-ops' numbers would be this one's (co-ops that
        # contributed no records, made up or not, hide nothing).
        note = WITHHELD_ONE
    else:
        note = ""
    # Named co-ops first, by name; the unnamed after them in the report's (node id) order.
    coops.sort(key=lambda c: (c.node_id is None, c.label if c.node_id else ""))
    trust = " ".join(f"--trust {node}" for node in sorted(trusted_nodes))
    return PublishedView(
        hash=digest,
        task=report.task,
        model_name=_model_name(report),
        model_sha256=report.model_sha256,
        purpose=report.purpose,
        request_hash=report.request_hash,
        created_at=report.created_at,
        signer=report.signer,
        coops=tuple(coops),
        aggregate_metrics=None if note else dict(report.aggregate.metrics),
        aggregate_records=None if note else report.aggregate.records,
        aggregate_nodes=len(consents),
        aggregate_note=note,
        downloadable=all_named and bool(report.answers),
        published_at=published_at,
        # Without the download, whoever holds the report (its requester) checks it the same way,
        # and its bytes must hash to the digest shown.
        # (--trust would have to name every co-op in it, and the unnamed ones are not shown.)
        verify_hint=f"coop eval verify {digest}.json {trust}".rstrip()
        if all_named
        else "coop eval verify REPORT.json",
    )
