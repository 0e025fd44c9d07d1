"""The gossip protocol: its messages, the responder (a node's side) and one sync with a peer.

An exchange with a peer, every message one HTTP POST of JSON:

1. ``summary``: one hash of our whole digest; equal hashes end the exchange
   (well under 128 bytes each way when nothing changed);
2. ``reconcile``: the digests' difference (:mod:`coop.federation.reconcile`): we send a small
   table of our digest's items, the peer answers its items we lack and the keys of ours it
   lacks, from which we rebuild its digest; a table that does not peel is sent again larger,
   then the whole ``digest`` (origin -> (latest seq, hash, evidence hashes), both ways) is
   exchanged, as it is with an older node that answers 404 to ``reconcile``;
3. ``manifests``: pull what we lack, evidence first, in bounded batches;
4. ``push``: give the peer manifests it lacks (it verifies them itself), in bodies of at most
   :data:`MAX_PUSH_BYTES`, a few per exchange; a peer whose digest did not advance since we
   last pushed to it is not pushed the same again until a back-off passed (:class:`PushMemo`);
5. ``records``: pull record bytes by hash for entries we may mirror.

Nothing is sent per item: one digest exchange, then bulk pulls.  All the requests of one
exchange share one wall-clock budget: each request's deadline is the smaller of its own and
what is left, so a peer dripping every answer just under the per-request deadline costs at
most the budget.

A request lost on the way (the peer unreachable for it, or its answer lost) is sent again, up
to :data:`MAX_ATTEMPTS` times and :data:`MAX_RETRIES` in one exchange, within the same budget:
every step is idempotent (reads, and a ``push`` of manifests the peer already holds is answered
``duplicate``), and each attempt is signed anew (a signature's nonce is used once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, TypeVar

import msgspec

from coop.federation import reconcile
from coop.federation.errors import FederationError, PeerError, PeerTimeoutError, PeerUnreachableError
from coop.federation.gossip import (
    Accepted,
    Book,
    DigestItem,
    Duplicate,
    Equivocation,
    RecordRefusal,
    Rejected,
    Want,
    wants,
)
from coop.federation.joint_gossip import JointMessage, answer_joint, sync_joint
from coop.federation.reconcile import ReconcileMessage, ReconcileRequest
from coop.federation.roster_gossip import RosterMessage
from coop.federation.transport import Request, Response, Transport
from coop.governance.canonical import duplicate_key
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep

__all__ = [
    "DigestMessage",
    "ManifestsMessage",
    "PullManifests",
    "PullRecords",
    "PushMemo",
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
MAX_REFUSALS_KEPT: Final = 64  # record refusals one exchange reports in detail
# Pushes: one request's body at most (a single larger manifest goes alone, within the receiver's
# push cap), manifests and requests per exchange at most.  Pulls are the main road; a push only
# shortens it, so it stays small whatever a peer's digest claims.
MAX_PUSH_BYTES: Final = 4 * 1024 * 1024
MAX_PUSH_ITEMS: Final = 16
MAX_PUSHES: Final = 4
MAX_PUSH_BACKOFF: Final = 64  # exchanges a peer whose digest never advances waits between pushes
# Sends of one request at most (a lost one is sent again), and resends in one exchange at most.
MAX_ATTEMPTS: Final = 4
MAX_RETRIES: Final = 12
PATHS: Final = {
    "summary": "/federation/v1/summary",
    "digest": "/federation/v1/digest",
    "reconcile": "/federation/v1/reconcile",
    "manifests": "/federation/v1/manifests",
    "push": "/federation/v1/push",
    "records": "/federation/v1/records",
    "roster": "/federation/v1/roster",
    "joint": "/federation/v1/joint",
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
    ReconcileRequest: msgspec.json.Decoder(ReconcileRequest),
    ReconcileMessage: msgspec.json.Decoder(ReconcileMessage),
    PullManifests: msgspec.json.Decoder(PullManifests),
    ManifestsMessage: msgspec.json.Decoder(ManifestsMessage),
    PushReport: msgspec.json.Decoder(PushReport),
    PullRecords: msgspec.json.Decoder(PullRecords),
    RecordsMessage: msgspec.json.Decoder(RecordsMessage),
    RosterMessage: msgspec.json.Decoder(RosterMessage),
    JointMessage: msgspec.json.Decoder(JointMessage),
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
        if name == "reconcile":
            asked = _decode(ReconcileRequest, body)
            return _ENC.encode(reconcile.answer(self.book.digest(), asked))
        if name == "manifests":
            request = _decode(PullManifests, body)
            served = self.book.serve(request.wants, requester=requester)
            return _ENC.encode(ManifestsMessage([msgspec.Raw(m) for m in served]))
        if name == "push":
            pushed = _decode(ManifestsMessage, body)
            return _ENC.encode(_report(self.book.receive([bytes(m) for m in pushed.manifests], now=now)))
        if name == "roster":
            return _ENC.encode(_answer_roster(self.book, _decode(RosterMessage, body), now=now))
        if name == "joint":
            return _ENC.encode(answer_joint(self.book.joint, _decode(JointMessage, body)))
        if name == "records":
            pull = _decode(PullRecords, body)
            found, refused = self.records.fetch(pull.hashes[:MAX_RECORDS_PER_PULL], requester=requester)
            return _ENC.encode(RecordsMessage({h: msgspec.Raw(b) for h, b in found.items()}, refused))
        raise FederationError(f"unknown protocol step {name!r}")


def _decode(kind: type[M], data: bytes) -> M:
    if json_too_deep(data):
        raise FederationError(f"malformed {kind.__name__}: {NESTED_TOO_DEEP}")
    try:
        decoded: M = _DECODERS[kind].decode(data)
        repeated = duplicate_key(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError) as exc:
        raise FederationError(f"malformed {kind.__name__}: {exc}") from None
    if repeated is not None:
        raise FederationError(f"malformed {kind.__name__}: the key {repeated!r} appears more than once")
    return decoded


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
    # Record bytes this node would not keep (relabelled, another origin's), the first few.
    refusals: list[RecordRefusal] = msgspec.field(default_factory=list)
    bytes_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    retries: int = 0  # requests sent again after a loss
    error: str | None = None


Signer = Callable[[str, str, bytes], Mapping[str, str]]


class PushMemo:
    """What was pushed to one peer, per origin: the sequence its digest claimed then and a back-off.

    A peer whose digest has not advanced past what it claimed when we last pushed (it lost the
    push, refused it, or claims to be behind to make us send again) is skipped for ``backoff``
    exchanges, doubling up to :data:`MAX_PUSH_BACKOFF`; a digest that advanced resets it.  Bounded
    by the origins a node pins.  Not thread-safe: one exchange with a peer at a time.
    """

    def __init__(self) -> None:
        self._marks: dict[str, tuple[int, int, int]] = {}  # origin -> (their seq, skips left, backoff)

    def held(self, want: Want) -> bool:
        """Whether to leave this want out of the push now (one call per exchange and want)."""
        mark = self._marks.get(want.origin)
        if mark is None or want.after > mark[0]:
            return False
        seq, skips, backoff = mark
        if skips > 0:
            self._marks[want.origin] = (seq, skips - 1, backoff)
            return True
        return False

    def pushed(self, want: Want) -> None:
        mark = self._marks.get(want.origin)
        backoff = 1 if mark is None or want.after > mark[0] else min(2 * mark[2], MAX_PUSH_BACKOFF)
        self._marks[want.origin] = (want.after, backoff, backoff)


class _Link:
    """Signed POSTs to one peer, counting bytes; a lost request is sent again (bounded)."""

    def __init__(
        self,
        base: str,
        transport: Transport,
        signer: Signer,
        report: SyncReport,
        limits: tuple[float, int],
        budget: tuple[float, Callable[[], float]] | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.transport = transport
        self.signer = signer
        self.report = report
        self.timeout, self.max_bytes = limits
        self.budget = budget
        self.deadline = None if budget is None else budget[1]() + budget[0]
        self.retries_left = MAX_RETRIES

    def post(self, step: str, message: msgspec.Struct, kind: type[M]) -> M:
        return self.post_bytes(step, _ENC.encode(message), kind)

    def post_bytes(self, step: str, body: bytes, kind: type[M]) -> M:
        response = self.send(step, body)
        if response.status != 200:
            raise PeerError(f"{self.base + PATHS[step]} answered {response.status}")
        return _decode(kind, response.body)

    def send(self, step: str, body: bytes) -> Response:
        """The peer's answer to one step, whatever its status; a request or answer lost on the
        way is sent again, at most :data:`MAX_ATTEMPTS` times, :data:`MAX_RETRIES` an exchange."""
        attempt = 1
        while True:
            try:
                return self._send_once(step, body)
            except PeerUnreachableError:
                if attempt >= MAX_ATTEMPTS or self.retries_left <= 0:
                    raise
            attempt += 1
            self.retries_left -= 1
            self.report.retries += 1

    def _send_once(self, step: str, body: bytes) -> Response:
        url = self.base + PATHS[step]
        timeout, limited = self.timeout, False
        if self.budget is not None and self.deadline is not None:
            left = self.deadline - self.budget[1]()
            if left <= 0:
                raise PeerTimeoutError(f"{self.base}: the exchange used its {self.budget[0]:g} s budget")
            timeout, limited = min(timeout, left), left < timeout
        headers = {"Content-Type": "application/json", **self.signer("POST", url, body)}
        try:
            response = self.transport.send(
                Request(method="POST", url=url, headers=headers, body=body),
                timeout=timeout,
                max_bytes=self.max_bytes,
            )
        except PeerTimeoutError:
            if not limited or self.budget is None:
                raise
            raise PeerTimeoutError(
                f"{url}: the exchange used its {self.budget[0]:g} s budget during {step}"
            ) from None
        self.report.requests += 1
        self.report.bytes_sent += len(body)
        self.report.bytes_received += len(response.body)
        return response


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
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    memo: PushMemo | None = None,
    by_difference: bool = True,
) -> SyncReport:
    """One push-pull exchange with the peer at ``base`` (node id ``peer``, when known: what is
    pushed to it follows the same relay rule as what it is served); errors end it and are reported.

    ``budget`` seconds (by ``clock``) bound all its requests together; ``memo`` remembers what was
    pushed to this peer across exchanges (without one, every exchange pushes what is lacking).
    ``by_difference=False`` exchanges whole digests, as before ``reconcile`` (for comparison)."""
    report = SyncReport(peer=base)
    link = _Link(
        base, transport, signer, report, (timeout, max_bytes), None if budget is None else (budget, clock)
    )
    try:
        theirs = link.post("summary", SummaryMessage(book.summary()), SummaryMessage)
        if theirs.summary != book.summary():
            if book.roster is not None and book.roster.current is not None:
                _sync_roster(link, book, now=now)
            sync_joint(link.send, _decode, book.joint)
            remote = _remote_digest(link, book, by_difference=by_difference)
            _exchange(link, book, report, remote, now=now, peer=peer, memo=memo)
        else:
            report.in_sync = True
        if records:
            _pull_records(link, book, report)
    except (PeerError, FederationError) as exc:
        report.error = exc.message
    return report


def _remote_digest(link: _Link, book: Book, *, by_difference: bool) -> dict[str, DigestItem]:
    """The peer's whole digest: rebuilt from the difference when it peels (a larger table when
    it does not), else sent whole (an older node answers 404 to ``reconcile``)."""
    local = book.digest()
    if not by_difference:
        return link.post("digest", DigestMessage(local), DigestMessage).digest
    whole = len(_ENC.encode(DigestMessage(local)))
    for cells in reconcile.SIZES:
        if cells * reconcile.CELL_BYTES * 4 // 3 >= whole:
            break  # the whole digest is smaller than a table this size
        response = link.send("reconcile", _ENC.encode(reconcile.request(local, cells)))
        if response.status == 404:
            break
        if response.status != 200:
            raise PeerError(f"{link.base + PATHS['reconcile']} answered {response.status}")
        rebuilt = reconcile.remote_digest(local, _decode(ReconcileMessage, response.body))
        if rebuilt is not None:
            return rebuilt
    # No responder reads the body of a digest request: ours is not sent again.
    return link.post("digest", DigestMessage({}), DigestMessage).digest


def _exchange(
    link: _Link,
    book: Book,
    report: SyncReport,
    remote: Mapping[str, DigestItem],
    *,
    now: int,
    peer: str | None,
    memo: PushMemo | None,
) -> None:
    pulled: list[object] = []
    for _ in range(MAX_PULL_ROUNDS):
        wanted = book.wants(remote)
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
    theirs_lack = wants(remote, book.digest(), book.known())
    if memo is not None:
        theirs_lack = [want for want in theirs_lack if not memo.held(want)]
    if theirs_lack:
        _push(link, book, report, theirs_lack, peer=peer)
        if memo is not None:
            for want in theirs_lack:
                memo.pushed(want)


def _push(link: _Link, book: Book, report: SyncReport, lacking: list[Want], *, peer: str | None) -> None:
    """What the peer lacks, a few manifests in bodies of at most :data:`MAX_PUSH_BYTES` (a larger
    one alone, when within the byte cap a peer takes), at most :data:`MAX_PUSHES` requests."""
    envelopes = book.serve(lacking, max_items=MAX_PUSH_ITEMS, requester=peer)
    batches: list[list[bytes]] = []
    size = 0
    for envelope in envelopes:
        if len(envelope) + 64 > link.max_bytes:
            break  # the chain is in order: the peer cannot take the rest before this one
        if not batches or size + len(envelope) + 1 > MAX_PUSH_BYTES:
            if len(batches) == MAX_PUSHES:
                break
            batches.append([])
            size = 16  # {"manifests":[]}
        batches[-1].append(envelope)
        size += len(envelope) + 1
    del envelopes
    totals = [0, 0, 0]
    rejected: list[str] = []
    while batches:
        batch = batches.pop(0)
        body = _ENC.encode(ManifestsMessage([msgspec.Raw(e) for e in batch]))
        del batch
        answer = link.post_bytes("push", body, PushReport)
        del body
        totals[0] += answer.accepted
        totals[1] += answer.duplicate
        totals[2] += answer.equivocation
        rejected += answer.rejected
        report.pushed = PushReport(
            accepted=totals[0], duplicate=totals[1], equivocation=totals[2], rejected=list(rejected)
        )


def _pull_records(link: _Link, book: Book, report: SyncReport) -> None:
    wanted = book.record_wants(limit=MAX_RECORDS_PER_PULL * 8)
    for start in range(0, len(wanted), MAX_RECORDS_PER_PULL):
        batch = wanted[start : start + MAX_RECORDS_PER_PULL]
        got = link.post("records", PullRecords([entry.hash for _, entry in batch]), RecordsMessage)
        refused = book.accept_records(batch, {h: bytes(b) for h, b in got.records.items()})
        report.refusals += refused[: MAX_REFUSALS_KEPT - len(report.refusals)]
        # Only what was asked for and kept counts: bytes nobody asked for are ignored.
        report.records += sum(1 for _, entry in batch if entry.hash in got.records) - len(refused)
        report.records_refused += len(refused) + len(got.refused)


def _answer_roster(book: Book, message: RosterMessage, *, now: int) -> RosterMessage:
    """The ``roster`` step: take the peer's versions and proposals, answer what it lacks."""
    if book.roster is None:
        return RosterMessage()
    book.roster.receive([bytes(v) for v in message.versions], [bytes(p) for p in message.proposals], now=now)
    versions, proposals = book.roster.items_for(message.digest)
    return RosterMessage(
        digest=book.roster.digest(),
        versions=[msgspec.Raw(v) for v in versions],
        proposals=[msgspec.Raw(p) for p in proposals],
    )


def _sync_roster(link: _Link, book: Book, *, now: int) -> None:
    """Roster versions and proposals both ways: our digest out, what we lack back, then what the
    peer lacks (when anything).  A peer without the step (an older node) is left alone."""
    roster = book.roster
    assert roster is not None
    response = link.send("roster", _ENC.encode(RosterMessage(digest=roster.digest())))
    if response.status != 200:
        return
    answer = _decode(RosterMessage, response.body)
    roster.receive([bytes(v) for v in answer.versions], [bytes(p) for p in answer.proposals], now=now)
    versions, proposals = roster.items_for(answer.digest)
    if versions or proposals:
        link.post(
            "roster",
            RosterMessage(
                digest=roster.digest(),
                versions=[msgspec.Raw(v) for v in versions],
                proposals=[msgspec.Raw(p) for p in proposals],
            ),
            RosterMessage,
        )
