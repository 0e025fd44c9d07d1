"""The gossip protocol: its messages, the responder (a node's side) and one sync with a peer.

An exchange with a peer, every message one HTTP POST of JSON:

1. ``summary``: one hash of our whole digest; equal hashes end the exchange
   (well under 128 bytes each way when nothing changed);
2. ``digest``: origin -> (latest seq, hash, evidence hashes), both ways;
3. ``manifests``: pull what we lack, evidence first, in bounded batches;
4. ``push``: give the peer manifests it lacks (it verifies them itself);
5. ``records``: pull record bytes by hash for entries we may mirror.

Nothing is sent per item: one digest exchange, then bulk pulls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, TypeVar

import msgspec

from coop.federation.errors import FederationError, PeerError
from coop.federation.gossip import (
    Accepted,
    Book,
    DigestItem,
    Duplicate,
    Equivocation,
    Rejected,
    Want,
    wants,
)
from coop.federation.transport import Request, Transport

__all__ = [
    "DigestMessage",
    "ManifestsMessage",
    "PullManifests",
    "PullRecords",
    "PushReport",
    "RecordSource",
    "RecordsMessage",
    "Responder",
    "SummaryMessage",
    "SyncReport",
    "sync_with",
]

MAX_RECORDS_PER_PULL: Final = 256
MAX_PULL_ROUNDS: Final = 64
PATHS: Final = {
    "summary": "/federation/v1/summary",
    "digest": "/federation/v1/digest",
    "manifests": "/federation/v1/manifests",
    "push": "/federation/v1/push",
    "records": "/federation/v1/records",
}


class SummaryMessage(msgspec.Struct, frozen=True):
    summary: str


class DigestMessage(msgspec.Struct, frozen=True):
    digest: dict[str, DigestItem]


class PullManifests(msgspec.Struct, frozen=True):
    wants: list[Want]


class ManifestsMessage(msgspec.Struct, frozen=True):
    manifests: list[msgspec.Raw]  # envelopes, byte for byte as stored


class PushReport(msgspec.Struct, frozen=True):
    accepted: int = 0
    duplicate: int = 0
    equivocation: int = 0
    rejected: list[str] = msgspec.field(default_factory=list)


class PullRecords(msgspec.Struct, frozen=True):
    hashes: list[str]


class RecordsMessage(msgspec.Struct, frozen=True):
    records: dict[str, msgspec.Raw]  # hash -> the record's canonical bytes
    refused: list[str] = msgspec.field(default_factory=list)


M = TypeVar("M", bound=msgspec.Struct)

_ENC: Final = msgspec.json.Encoder()
_DECODERS: Final[dict[type, msgspec.json.Decoder[Any]]] = {
    SummaryMessage: msgspec.json.Decoder(SummaryMessage),
    DigestMessage: msgspec.json.Decoder(DigestMessage),
    PullManifests: msgspec.json.Decoder(PullManifests),
    ManifestsMessage: msgspec.json.Decoder(ManifestsMessage),
    PushReport: msgspec.json.Decoder(PushReport),
    PullRecords: msgspec.json.Decoder(PullRecords),
    RecordsMessage: msgspec.json.Decoder(RecordsMessage),
}


class RecordSource(Protocol):
    """Record bytes a node may hand to a peer: its own shareable records and its mirrors.

    ``requester`` is the asking peer's node id (from its verified request signature):
    the disclosure policy answers for that peer.
    """

    def fetch(
        self, hashes: list[str], *, requester: str | None = None
    ) -> tuple[dict[str, bytes], list[str]]: ...


class Responder:
    """A node's side of the protocol; the caller has already authenticated the peer."""

    def __init__(self, book: Book, records: RecordSource) -> None:
        self.book = book
        self.records = records

    def handle(self, name: str, body: bytes, *, now: int, requester: str | None = None) -> bytes:
        if name == "summary":
            return _ENC.encode(SummaryMessage(self.book.summary()))
        if name == "digest":
            return _ENC.encode(DigestMessage(self.book.digest()))
        if name == "manifests":
            request = _decode(PullManifests, body)
            served = self.book.serve(request.wants, requester=requester)
            return _ENC.encode(ManifestsMessage([msgspec.Raw(m) for m in served]))
        if name == "push":
            pushed = _decode(ManifestsMessage, body)
            return _ENC.encode(_report(self.book.receive([bytes(m) for m in pushed.manifests], now=now)))
        if name == "records":
            pull = _decode(PullRecords, body)
            found, refused = self.records.fetch(pull.hashes[:MAX_RECORDS_PER_PULL], requester=requester)
            return _ENC.encode(RecordsMessage({h: msgspec.Raw(b) for h, b in found.items()}, refused))
        raise FederationError(f"unknown protocol step {name!r}")


def _decode(kind: type[M], data: bytes) -> M:
    try:
        decoded: M = _DECODERS[kind].decode(data)
        return decoded
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise FederationError(f"malformed {kind.__name__}: {exc}") from None


def _report(decisions: Iterable[object]) -> PushReport:
    accepted = duplicate = equivocation = 0
    rejected: list[str] = []
    for decision in decisions:
        if isinstance(decision, Accepted):
            accepted += 1
        elif isinstance(decision, Duplicate):
            duplicate += 1
        elif isinstance(decision, Equivocation):
            equivocation += 1
        elif isinstance(decision, Rejected):
            rejected.append(decision.reason.value)
    return PushReport(accepted=accepted, duplicate=duplicate, equivocation=equivocation, rejected=rejected)


class SyncReport(msgspec.Struct, kw_only=True):
    """What one exchange with one peer moved."""

    peer: str
    in_sync: bool = False
    pulled: PushReport = msgspec.field(default_factory=PushReport)
    pushed: PushReport = msgspec.field(default_factory=PushReport)
    records: int = 0
    records_refused: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    error: str | None = None


Signer = Callable[[str, str, bytes], Mapping[str, str]]


class _Link:
    """Signed POSTs to one peer, counting bytes."""

    def __init__(
        self, base: str, transport: Transport, signer: Signer, report: SyncReport, limits: tuple[float, int]
    ) -> None:
        self.base = base.rstrip("/")
        self.transport = transport
        self.signer = signer
        self.report = report
        self.timeout, self.max_bytes = limits

    def post(self, step: str, message: msgspec.Struct, kind: type[M]) -> M:
        url = self.base + PATHS[step]
        body = _ENC.encode(message)
        headers = {"Content-Type": "application/json", **self.signer("POST", url, body)}
        response = self.transport.send(
            Request(method="POST", url=url, headers=headers, body=body),
            timeout=self.timeout,
            max_bytes=self.max_bytes,
        )
        self.report.requests += 1
        self.report.bytes_sent += len(body)
        self.report.bytes_received += len(response.body)
        if response.status != 200:
            raise PeerError(f"{url} answered {response.status}")
        return _decode(kind, response.body)


def sync_with(
    base: str,
    book: Book,
    transport: Transport,
    *,
    signer: Signer,
    now: int,
    timeout: float = 10.0,
    max_bytes: int = 128 * 1024 * 1024,
    records: bool = True,
    peer: str | None = None,
) -> SyncReport:
    """One push-pull exchange with the peer at ``base`` (node id ``peer``, when known: what is
    pushed to it follows the same relay rule as what it is served); errors end it and are reported."""
    report = SyncReport(peer=base)
    link = _Link(base, transport, signer, report, (timeout, max_bytes))
    try:
        theirs = link.post("summary", SummaryMessage(book.summary()), SummaryMessage)
        if theirs.summary != book.summary():
            _exchange(link, book, report, now=now, peer=peer)
        else:
            report.in_sync = True
        if records:
            _pull_records(link, book, report)
    except (PeerError, FederationError) as exc:
        report.error = exc.message
    return report


def _exchange(link: _Link, book: Book, report: SyncReport, *, now: int, peer: str | None) -> None:
    remote = link.post("digest", DigestMessage(book.digest()), DigestMessage)
    pulled: list[object] = []
    for _ in range(MAX_PULL_ROUNDS):
        wanted = book.wants(remote.digest)
        if not wanted:
            break
        got = link.post("manifests", PullManifests(wanted), ManifestsMessage)
        if not got.manifests:
            break
        decisions = book.receive([bytes(m) for m in got.manifests], now=now)
        pulled += decisions
        if not any(isinstance(d, Accepted | Equivocation) for d in decisions):
            break  # nothing new came of it: do not ask again
    report.pulled = _report(pulled)
    # What the peer lacks, among origins it told us about or that we hold.
    theirs_lack = wants(remote.digest, book.digest(), set(book.pinned) | {book.self_id})
    if theirs_lack:
        envelopes = book.serve(theirs_lack, requester=peer)
        if envelopes:
            pushed = link.post("push", ManifestsMessage([msgspec.Raw(e) for e in envelopes]), PushReport)
            report.pushed = pushed


def _pull_records(link: _Link, book: Book, report: SyncReport) -> None:
    wanted = book.record_wants(limit=MAX_RECORDS_PER_PULL * 8)
    for start in range(0, len(wanted), MAX_RECORDS_PER_PULL):
        batch = wanted[start : start + MAX_RECORDS_PER_PULL]
        got = link.post("records", PullRecords([entry.hash for _, entry in batch]), RecordsMessage)
        refused = book.receive_records(batch, {h: bytes(b) for h, b in got.records.items()})
        report.records += len(got.records) - len(refused)
        report.records_refused += len(refused) + len(got.refused)
