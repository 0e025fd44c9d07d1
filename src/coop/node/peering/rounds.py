"""Rounds of gossip this node starts: push-pull exchanges with its pinned peers over HTTP.

Each round issues a manifest if something changed, picks ``fanout`` peers at
random (or every peer, for ``coop sync``) and runs the protocol's exchange
(:func:`coop.federation.sync_with`) with each, a bounded pool of them at once.
What an exchange moved, what went wrong, what was refused and the peer's clock
are kept for ``coop peers list`` and the status page.
"""

from __future__ import annotations

import logging
import random
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate, parsedate_to_datetime
from typing import Final

import msgspec

from coop.federation import Book, HttpxTransport, SyncReport, sign_request, sync_with
from coop.federation.gossip import RecordRefusal
from coop.federation.protocol import PushMemo
from coop.federation.transport import Request, Response, Transport
from coop.governance import Signer
from coop.governance.nesting import json_too_deep
from coop.node.config import FederationConfig
from coop.node.errors import BusyError
from coop.node.peering.peers import Peers, PeerView, note_contact, note_skew
from coop.node.peering.refusals import keep_refusals, manifest_refusals, record_refusals, skew_text
from coop.node.storage.datadir import DataDir
from coop.node.storage.store import Store

__all__ = ["PARALLEL_PEERS", "Rounds"]

log = logging.getLogger("coop.federation")

PARALLEL_PEERS: Final = 8  # peers exchanged with at once in a round
KEPT_CONNECTIONS: Final = 64  # connections kept open to peers between rounds (one per peer)


class Rounds:
    """This node's gossip rounds; ``issue`` issues a manifest when something changed."""

    def __init__(
        self,
        store: Store,
        data: DataDir,
        book: Book,
        peers: Peers,
        *,
        config: FederationConfig,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        issue: Callable[[], object],
    ) -> None:
        self.store = store
        self.data = data
        self.book = book
        self.peers = peers
        self.config = config
        self.clock = clock
        self.signer = signer
        self.issue = issue
        self.rng = random.Random(secrets.randbits(64))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._transport: HttpxTransport | None = None
        # Per peer, what was pushed to it: a peer whose digest never advances is not re-pushed.
        self._pushed: dict[str, PushMemo] = {}

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """The headers that sign one request of an exchange (RFC 9421), and our clock."""
        now = self.clock()
        headers = sign_request(
            method, url, body, signer=self.signer(), now=now, nonce=secrets.token_urlsafe(18)
        )
        # Our clock, for the peer to measure the offset when it refuses us for time.
        headers["Date"] = formatdate(now, usegmt=True)
        return headers

    def gossip_round(self, *, every_peer: bool = False) -> list[SyncReport]:
        """Issue a manifest if something changed, then gossip with ``fanout`` peers at random
        (or with every peer).  One round at a time per data directory, across processes."""
        try:
            with self.data.lock("gossip", purpose="a gossip round", wait=0 if not every_peer else 60):
                return self._round(every_peer=every_peer)
        except BusyError:
            if every_peer:
                raise
            return []  # another process (coop sync) is gossiping for this node right now

    def _round(self, *, every_peer: bool) -> list[SyncReport]:
        self.peers.refresh_pins()
        self.issue()
        candidates = self.peers.peers()
        with self._lock:  # a removed peer's push memo goes with it
            self._pushed = {
                p.node_id: self._pushed[p.node_id] for p in candidates if p.node_id in self._pushed
            }
        fanout = self.config.fanout
        chosen = candidates if every_peer else self.rng.sample(candidates, min(fanout, len(candidates)))
        if not chosen:
            return []
        # Peers are exchanged with at once (a bounded pool): a slow one costs its slot, not the
        # round; each request ends by its own deadline (the transport's), whatever the peer sends,
        # and all of one exchange's requests by ``exchange_budget_seconds``.
        transport = self._gossip_transport()
        futures = [self._gossip_pool().submit(self._sync_one, peer, transport) for peer in chosen]
        return [future.result() for future in futures]

    def _gossip_transport(self) -> HttpxTransport:
        # One transport for the service's life, so its pool keeps a connection to each peer open
        # from one round to the next (a new one per round opened a TCP connection per exchange).
        with self._lock:
            if self._transport is None:
                self._transport = HttpxTransport(max_connections=KEPT_CONNECTIONS)
                weakref.finalize(self, self._transport.close)
            return self._transport

    def close(self) -> None:
        """Close the connections kept to peers (also done when this object is collected, or at exit)."""
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def _gossip_pool(self) -> ThreadPoolExecutor:
        # One pool for the service's life: its threads (and their database readers) are reused.
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARALLEL_PEERS, thread_name_prefix="coop-gossip")
            return self._pool

    def _push_memo(self, node_id: str) -> PushMemo:
        with self._lock:
            return self._pushed.setdefault(node_id, PushMemo())

    def _sync_one(self, peer: PeerView, transport: HttpxTransport) -> SyncReport:
        """One exchange with one peer; what it moved, what went wrong and the peer's clock are kept."""
        observed = _Observed(transport, self.clock)
        report = sync_with(
            peer.url,
            self.book,
            observed,
            signer=self.sign,
            now=self.clock(),
            timeout=self.config.request_timeout_seconds,
            max_bytes=self.config.max_response_bytes,
            peer=peer.node_id,
            budget=self.config.exchange_budget_seconds,
            memo=self._push_memo(peer.node_id),
        )
        if report.error and observed.problem:
            report.error = f"{report.error}: {observed.problem}"
        if report.error and observed.refused_for_time and observed.skew is not None:
            report.error = f"{report.error} ({skew_text(observed.skew)})"
        now = self.clock()

        def write(conn: sqlite3.Connection) -> None:
            note_contact(conn, node_id=peer.node_id, error=report.error, now=now)
            if observed.skew is not None:
                note_skew(conn, peer.node_id, observed.skew)

        self.store.write(write)
        if report.pulled.rejected:
            refused = manifest_refusals(
                report.pulled.rejected, at=self.clock(), step="manifests", node_id=peer.node_id, keyid=None
            )
            self.store.write(lambda c: keep_refusals(c, refused))
        if report.refusals:
            self.refused_records(peer.node_id, report.refusals)
        if report.error:
            log.warning("gossip with %s failed: %r", peer.url, report.error)
        return report

    def refused_records(self, node_id: str, refusals: Sequence[RecordRefusal]) -> None:
        """Keep record bytes a peer served that this node would not keep, one refusal each."""
        refused = record_refusals(refusals, at=self.clock(), node_id=node_id)
        self.store.write(lambda c: keep_refusals(c, refused))


class _Observed:
    """A round's transport as one peer sees it: notes the peer's clock (its ``Date``, or the
    offset its refusal measured) and why it refused, which the protocol reports as a status."""

    def __init__(self, transport: Transport, now: Callable[[], int]) -> None:
        self.transport = transport
        self.now = now
        self.skew: int | None = None  # this node's clock minus the peer's
        self.problem: str | None = None
        self.refused_for_time = False

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        sent = self.now()
        response = self.transport.send(request, timeout=timeout, max_bytes=max_bytes)
        received = self.now()
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            peer_time = int(parsedate_to_datetime(headers.get("date", "")).timestamp())
            self.skew = (sent + received) // 2 - peer_time
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
        if response.status >= 400 and headers.get("content-type", "").startswith("application/problem+json"):
            self._read_problem(response.body)
        return response

    def _read_problem(self, body: bytes) -> None:
        head = body[:8192]
        if json_too_deep(head):
            return  # a peer's nesting must not reach the interpreter's recursion limit
        try:
            problem = msgspec.json.decode(head)
        except msgspec.DecodeError:
            return
        if not isinstance(problem, dict):
            return
        detail = problem.get("detail")
        if isinstance(detail, str):
            # %r-style quoting keeps a peer's words from forging lines in our log or listing.
            self.problem = repr(detail[:200])[1:-1]
        offset = problem.get("clock_offset_seconds")
        if isinstance(offset, int) and not isinstance(offset, bool):
            # The peer measured our signature's clock minus its own: ours minus the peer's.
            self.skew = offset
            self.refused_for_time = True
