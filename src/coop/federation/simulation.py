"""A deterministic, seeded simulator of a federation: N nodes running the real state machine.

Every node is a :class:`~coop.federation.gossip.Book` with its in-memory
store and a :class:`~coop.federation.protocol.Responder`; nodes exchange the
real protocol messages through an in-memory network that drops messages,
crashes nodes, partitions groups and heals them.  Byzantine nodes drop,
replay, forge or equivocate.  Same seed, same run.

Two ways to lay out trust and talk:

* the default, a full mesh: every node pins every other and may talk to any of
  them, and each manifest lists its federation (every other node id);
* ``roster=True`` with a sparse ``talk`` graph (:func:`sparse_talk`: a ring
  plus a few random peers): every node trusts the roster's members (one
  members mapping shared by every book, as a node does once a roster is in
  force) and talks only to its own few peers, so records travel from peer to
  peer.  Immutable things every node holds alike (envelopes, entries, heads,
  record bytes) are shared, not copied per node, so 10,000 nodes fit in memory.

Request signatures (RFC 9421) are not used here: the in-memory network is
the trust boundary of the simulation; they are tested on their own and over
real HTTP.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import msgspec

from coop.federation.errors import PeerUnreachableError
from coop.federation.gossip import Accepted, Book, Effects, MemoryBookStore, mirrorable
from coop.federation.manifest import (
    GENESIS,
    Entry,
    GovernanceState,
    Tombstone,
    build_manifest,
    seal_manifest,
)
from coop.federation.protocol import PATHS, Responder, SyncReport, sync_with
from coop.federation.transport import Request, Response
from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    Embargo,
    EvalConsent,
    Label,
    License,
    Message,
    Provenance,
    Record,
    Role,
    Scope,
    Signer,
    Source,
    canonical_bytes,
    public_key,
    sha256_hex,
)

__all__ = ["Behaviour", "Federation", "SharedObjects", "SimNode", "record_for", "sparse_talk"]

_STEPS: Final = {path: step for step, path in PATHS.items()}
T = TypeVar("T")


def record_for(entry: Entry, text: str = "a chat") -> tuple[Entry, bytes]:
    """A record saying ``text`` whose own terms are ``entry``'s (peers keep bytes only under an
    entry whose terms they repeat), and the entry naming the record's hash."""
    record = Record(
        uid=entry.uid,
        created_at=0,
        route=Channel.API,
        model=None,
        content=(Message(Role.USER, text),),
        label=Label.GOOD,
        tags=entry.tags,
        language=entry.language,
        license=entry.license,
        ai_use=entry.ai_use,
        eval=entry.eval,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        scope=entry.scope,
        provenance=Provenance(Source.NATURAL, False, "messages", Checks({}, "0" * 64)),
    )
    data = canonical_bytes(record)
    return msgspec.structs.replace(entry, hash=sha256_hex(data)), data


_STATE: Final = GovernanceState(
    settings_digest="0" * 64, embargo=Embargo(), quality_freeze=False, audit_seq=0, audit_head="0" * 64
)
LIFETIME: Final = 30 * 86_400


class Behaviour(enum.StrEnum):
    HONEST = "honest"
    DROP = "drop"  # answers nothing useful
    REPLAY = "replay"  # serves only its oldest manifests, again and again
    FORGE = "forge"  # serves altered manifests and record bytes that do not match
    EQUIVOCATE = "equivocate"  # as an origin, tells different peers different histories


class SharedObjects:
    """One copy of each immutable thing many nodes hold alike: strings, bytes, frozen structs.

    Every node decodes its own copy of what it receives; keeping them all would make the
    simulation's memory grow with nodes x the world.  What a store keeps is swapped for the
    first equal object seen (the simulator's memory, not a node's: a real node keeps its own).
    """

    def __init__(self) -> None:
        self._objects: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def one(self, value: T) -> T:
        shared: T = self._objects.setdefault(value, value)
        return shared

    def effects(self, effects: Effects) -> Effects:
        one = self.one
        return msgspec.structs.replace(
            effects,
            origin=one(effects.origin),
            store=tuple((seq, one(h), one(data), chain) for seq, h, data, chain in effects.store),
            head=None if effects.head is None else one(effects.head),
            added=tuple(one(entry) for entry in effects.added),
            tombstones=tuple(one(tomb) for tomb in effects.tombstones),
        )


class SharedStore(MemoryBookStore):
    """A node's in-memory store whose envelopes, entries, heads and record bytes are shared."""

    def __init__(self, shared: SharedObjects) -> None:
        super().__init__()
        self.shared = shared

    def apply(self, effects: Effects) -> None:
        super().apply(self.shared.effects(effects))

    def put_records(self, items: Sequence[tuple[str, Entry, bytes]]) -> None:
        one = self.shared.one
        super().put_records([(one(origin), one(entry), one(data)) for origin, entry, data in items])


def sparse_talk(n: int, rng: random.Random, *, extra: int = 2) -> list[tuple[int, ...]]:
    """Whom each node talks to: its two ring neighbours and ``extra`` other nodes at random.

    Directed, as pins are: node i calls these; an exchange moves manifests both ways.
    """
    talk = []
    for i in range(n):
        near = {(i - 1) % n, (i + 1) % n} - {i}
        far: set[int] = set()
        while len(far) < min(extra, n - 1 - len(near)):
            j = rng.randrange(n)
            if j != i and j not in near:
                far.add(j)
        talk.append(tuple(sorted(near)) + tuple(sorted(far)))
    return talk


class SimNode:
    """One simulated node: a key, a book, its own records and manifests."""

    def __init__(
        self, index: int, seed: bytes, behaviour: Behaviour, *, store: MemoryBookStore | None = None
    ) -> None:
        self.index = index
        self.seed = seed
        self.current = seed  # the key that signs now (changes with a rotation)
        self.id = public_key(seed).hex()
        self.behaviour = behaviour
        self.store = MemoryBookStore() if store is None else store
        self.book = Book(self.id, {}, self.store)
        # Whether its manifests list its federation (every other pinned id); under a roster
        # the federation is the roster's members and the manifest does not list 10,000 ids.
        self.lists_federation = True
        self.own: dict[str, tuple[Entry, bytes]] = {}
        self.tombstones: list[Tombstone] = []
        self.seq = 0
        self.prev = GENESIS
        self.listed: dict[str, Entry] = {}
        self.alive = True
        self.responder = Responder(self.book, self)

    # -- RecordSource -------------------------------------------------------------------

    def fetch(self, hashes: list[str], *, requester: str | None = None) -> tuple[dict[str, bytes], list[str]]:
        own = {entry.hash: data for entry, data in self.own.values() if mirrorable(entry)}
        found = {h: own[h] for h in hashes if h in own}
        found.update(self.store.records([h for h in hashes if h not in found]))
        if self.behaviour is Behaviour.FORGE:
            found = {h: data + b" " for h, data in found.items()}
        return found, [h for h in hashes if h not in found]

    # -- publishing -------------------------------------------------------------------------

    def add_record(self, rng: random.Random, *, scope: Scope = Scope.PUBLIC) -> Entry:
        uid = f"{self.index:04d}-{len(self.own):06d}-{rng.getrandbits(32):08x}"
        licence = rng.choice(list(License))
        entry, data = record_for(
            Entry(uid=uid, hash="", license=licence, ai_use="train-ai=y", eval=EvalConsent.YES, scope=scope),
            f"chat {uid} of {self.id}",
        )
        self.own[uid] = (entry, data)
        return entry

    def withdraw(self, uid: str, now: int) -> None:
        self.own.pop(uid, None)
        if uid in self.listed:
            self.tombstones.append(Tombstone(uid=uid, at=now))

    def publish(self, now: int, *, rotate_to_seed: bytes | None = None, deliver: bool = True) -> bytes:
        """Issue the next manifest (the records added and withdrawn since the last one).

        With ``rotate_to_seed`` it announces a new key, signed by the old and the new one.
        """
        added = [e for e, _ in self.own.values() if e.scope is not Scope.NODE and e.uid not in self.listed]
        gone = {t.uid for t in self.tombstones}
        complete = {uid: e for uid, e in self.listed.items() if uid not in gone}
        complete.update({e.uid: e for e in added})
        rotate_to = None if rotate_to_seed is None else public_key(rotate_to_seed).hex()
        payload = build_manifest(
            origin=self.id,
            key=public_key(self.current).hex(),
            coop=f"coop-{self.index}",
            seq=self.seq + 1,
            prev=self.prev,
            issued_at=now,
            lifetime=LIFETIME,
            release=f"v{self.seq + 1}",
            added=added,
            complete=complete,
            tombstones=self.tombstones,
            state=_STATE,
            rotate_to=rotate_to,
            federation=[origin for origin in self.book.pinned if origin != self.id]
            if self.lists_federation
            else None,
        )
        seeds = [self.current] if rotate_to_seed is None else [self.current, rotate_to_seed]
        envelope = seal_manifest(payload, [Signer(seed) for seed in seeds])
        if deliver:
            decisions = self.book.receive([envelope], now=now)
            if not decisions or not isinstance(decisions[0], Accepted):
                raise RuntimeError(f"node {self.index} refused its own manifest: {decisions}")
        self.seq += 1
        self.prev = sha256_hex(payload)
        self.listed = complete
        self.tombstones = []
        if rotate_to_seed is not None:
            self.current = rotate_to_seed
        return envelope

    def fork(self, now: int, rng: random.Random) -> tuple[bytes, bytes]:
        """Two valid manifests with the same sequence and different content (equivocation)."""
        seq, prev, listed, tombstones = self.seq, self.prev, dict(self.listed), list(self.tombstones)
        self.add_record(rng)
        first = self.publish(now, deliver=False)
        self.seq, self.prev, self.listed, self.tombstones = seq, prev, listed, tombstones
        self.add_record(rng)
        second = self.publish(now, deliver=False)
        return first, second


class Federation:
    """N nodes, a lossy in-memory network between them, and the clock of the simulation.

    Trust: every node trusts every member (``members``, node id -> key, one mapping shared by
    every book).  With ``roster`` the members are a roster's: manifests do not list the
    federation (it is the roster), which is what lets 10,000 nodes fit (a listed federation is
    capped at ``Limits.max_federation`` ids, and each node would hold every origin's list).

    Talk: each round every live node syncs with ``fanout`` peers drawn from anyone (default) or,
    with ``sparse=k``, from its own peers of :func:`sparse_talk` (ring neighbours and k random).

    Loss: every request and every answer is dropped independently with probability ``loss``,
    with fresh randomness each time, so a protocol that retries within an exchange gets through.
    ``sticky_loss`` models a protocol without retries: once a message of an exchange is lost,
    every later message of that exchange is lost too (the exchange ends at its first loss).
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        fanout: int = 3,
        loss: float = 0.0,
        behaviours: Mapping[int, Behaviour] | None = None,
        roster: bool = False,
        sparse: int | None = None,
        sticky_loss: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.fanout = fanout
        self.loss = loss
        self.sticky_loss = sticky_loss
        self.now = 1_800_000_000
        self.round = 0
        self.partition: dict[int, int] = {}
        behaviours = behaviours or {}
        self.shared = SharedObjects()
        self.nodes = [
            SimNode(
                i,
                self.rng.randbytes(32),
                behaviours.get(i, Behaviour.HONEST),
                store=SharedStore(self.shared),
            )
            for i in range(n)
        ]
        self.roster = roster
        # Each node's id is its first key.  One mapping for every book: nobody edits it per node.
        self.members: dict[str, str] = {node.id: node.id for node in self.nodes}
        for node in self.nodes:
            node.book.pinned = self.members
            node.lists_federation = not roster
        self.talk = None if sparse is None else sparse_talk(n, self.rng, extra=sparse)
        # More keyword arguments for every sync_with (e.g. a protocol option, for a baseline).
        self.sync_options: dict[str, Any] = {}
        self.by_url = {self.url(node): node for node in self.nodes}
        self.requests = 0
        self.bytes = 0

    @staticmethod
    def url(node: SimNode) -> str:
        return f"sim://node{node.index}"

    @property
    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.behaviour is Behaviour.HONEST]

    # -- the network ---------------------------------------------------------------------

    def send(self, caller: SimNode, request: Request, *, timeout: float, max_bytes: int) -> Response:
        base, _, path = request.url.partition("/federation")
        peer = self.by_url[base]
        reachable = peer.alive and self.partition.get(peer.index, 0) == self.partition.get(caller.index, 0)
        if not reachable or self.rng.random() < self.loss:
            raise PeerUnreachableError(f"{request.url} unreachable")
        step = _STEPS["/federation" + path]
        self.requests += 1
        self.bytes += len(request.body)
        body = self._answer(peer, step, request.body)
        if self.rng.random() < self.loss:  # the answer can be lost too
            raise PeerUnreachableError(f"{request.url}: answer lost")
        self.bytes += len(body)
        return Response(status=200, headers={}, body=body)

    def _answer(self, peer: SimNode, step: str, body: bytes) -> bytes:
        behaviour = peer.behaviour
        if behaviour is Behaviour.DROP and step in ("manifests", "records", "push"):
            return msgspec.json.encode(
                {"manifests": [], "records": {}, "refused": []} if step != "push" else {}
            )
        answer = peer.responder.handle(step, body, now=self.now)
        if behaviour is Behaviour.REPLAY and step == "manifests":
            oldest = [peer.store.chain_after(o, 0, 1) for o in sorted(peer.store.heads())]
            return msgspec.json.encode({"manifests": [msgspec.Raw(m) for group in oldest for m in group]})
        if behaviour is Behaviour.FORGE and step == "manifests":
            served = msgspec.json.decode(answer)["manifests"]
            forged = [_tamper(msgspec.json.encode(m)) for m in served]
            return msgspec.json.encode({"manifests": [msgspec.Raw(m) for m in forged]})
        return answer

    def equivocate(self, index: int) -> None:
        """Node ``index`` tells half the honest nodes one history and half another."""
        node = self.nodes[index]
        first, second = node.fork(self.now, self.rng)
        targets = [n for n in self.nodes if n is not node]
        self.rng.shuffle(targets)
        half = len(targets) // 2
        for target in targets[:half]:
            target.book.receive([first], now=self.now)
        for target in targets[half:]:
            target.book.receive([second], now=self.now)

    # -- running ---------------------------------------------------------------------------

    def step(self, *, records: bool = True) -> list[SyncReport]:
        """One gossip round: every live node syncs with ``fanout`` peers chosen at random."""
        self.round += 1
        self.now += 10
        reports = []
        order = [n for n in self.nodes if n.alive]
        self.rng.shuffle(order)
        for node in order:
            for peer in self._partners(node):
                transport = _Bound(self, node)
                reports.append(
                    sync_with(
                        self.url(peer),
                        node.book,
                        transport,
                        signer=lambda *_: {},
                        now=self.now,
                        records=records,
                        **self.sync_options,
                    )
                )
        return reports

    def _partners(self, node: SimNode) -> list[SimNode]:
        """The ``fanout`` peers ``node`` syncs with this round."""
        if self.talk is not None:
            peers = self.talk[node.index]
            return [self.nodes[j] for j in self.rng.sample(peers, min(self.fanout, len(peers)))]
        # Anyone but itself (the same draws as sampling the list of the others).
        n = len(self.nodes)
        picks = self.rng.sample(range(n - 1), min(self.fanout, n - 1))
        return [self.nodes[j + (j >= node.index)] for j in picks]

    def converged(self, nodes: Iterable[SimNode] | None = None, *, records: bool = True) -> bool:
        """Every given node (default: honest and alive) holds the same manifests, evidence and mirrors."""
        group = [n for n in (nodes if nodes is not None else self.honest) if n.alive]
        if not group:
            return True
        views = [self.view(n, records=records) for n in group]
        return all(v == views[0] for v in views[1:])

    def view(self, node: SimNode, *, records: bool = True) -> tuple[object, ...]:
        # A forked origin has no single head to agree on (no winner is picked): agreeing on the
        # evidence is what counts.
        heads = {o: ("forked",) if h.forked else (h.seq, h.hash) for o, h in node.store.heads().items()}
        evidence = {o: sorted(v) for o, v in node.store.evidence().items()}
        tombstones = {o: sorted(node.store.tombstoned(o)) for o in heads}
        mirrored: object = ()
        if records:
            # A forked origin's records stop being mirrored where each node stood when it
            # learnt of the fork: they are not part of what honest nodes must agree on.
            forked = {o for o, h in node.store.heads().items() if h.forked}
            own_hashes = {e.hash for e, _ in node.own.values()}
            held = {h for h, (origin, _, _) in node.store.mirrored().items() if origin not in forked}
            mirrored = sorted(held | own_hashes)
        return (heads, evidence, tombstones, mirrored)

    def rounds_until_converged(
        self, *, limit: int = 100, nodes: Iterable[SimNode] | None = None, records: bool = True
    ) -> int | None:
        """Step until converged; the federation's round count then (None if ``limit`` steps did not do)."""
        group = list(nodes) if nodes is not None else None
        for _ in range(limit):
            if self.converged(group, records=records):
                return self.round
            self.step(records=records)
        return self.round if self.converged(group, records=records) else None


class _Bound:
    """The network as one node sees it in one exchange (who is calling matters for partitions;
    with ``sticky_loss`` a lost message loses the rest of the exchange)."""

    def __init__(self, federation: Federation, caller: SimNode) -> None:
        self.federation = federation
        self.caller = caller
        self.lost = False

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        if self.lost:
            raise PeerUnreachableError(f"{request.url}: the exchange was lost")
        try:
            return self.federation.send(self.caller, request, timeout=timeout, max_bytes=max_bytes)
        except PeerUnreachableError:
            self.lost = self.federation.sticky_loss
            raise


def _tamper(envelope: bytes) -> bytes:
    """Alter a manifest after signing: flip one character of its base64 payload."""
    data = msgspec.json.decode(envelope)
    payload = data["payload"]
    index = len(payload) // 2
    data["payload"] = payload[:index] + ("A" if payload[index] != "A" else "B") + payload[index + 1 :]
    return msgspec.json.encode(data)
