"""An exchange by difference (``reconcile``): what it costs, that it ends where the whole-digest
exchange ends, that older peers still get the whole digest, and that lost requests are resent
within bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.federation import reconcile
from coop.federation.errors import PeerUnreachableError
from coop.federation.protocol import MAX_ATTEMPTS, MAX_RETRIES, SyncReport, sync_with
from coop.federation.simulation import Federation, SimNode
from coop.federation.transport import Request, Response

SEED = 20261204


class Wire:
    """The simulated network as one caller sees it: bytes per step, and optional faults."""

    def __init__(
        self,
        fed: Federation,
        caller: SimNode,
        *,
        unknown: frozenset[str] = frozenset(),
        lose: frozenset[int] = frozenset(),
        lose_answers: frozenset[int] = frozenset(),
    ) -> None:
        self.fed, self.caller = fed, caller
        self.unknown = unknown  # steps answered 404, as by an older node
        self.lose, self.lose_answers = lose, lose_answers  # sends (0-based) lost on the way / after
        self.sends = 0
        self.steps: list[str] = []
        self.bytes: dict[str, int] = {}

    def send(self, request: Request, *, timeout: float, max_bytes: int) -> Response:
        step = request.url.rsplit("/", 1)[-1]
        index, self.sends = self.sends, self.sends + 1
        if index in self.lose:
            raise PeerUnreachableError(f"{request.url}: lost")
        if step in self.unknown:
            response = Response(status=404, headers={}, body=b'{"title":"no protocol step"}')
        else:
            response = self.fed.send(self.caller, request, timeout=timeout, max_bytes=max_bytes)
        if index in self.lose_answers:
            raise PeerUnreachableError(f"{request.url}: answer lost")
        self.steps.append(step)
        self.bytes[step] = self.bytes.get(step, 0) + len(request.body) + len(response.body)
        return response


def _sync(fed: Federation, caller: SimNode, peer: SimNode, wire: Wire, **kwargs: object) -> SyncReport:
    return sync_with(fed.url(peer), caller.book, wire, signer=lambda *_: {}, now=fed.now, **kwargs)  # type: ignore[arg-type]


def _pair(origins: int, *, seed: int = SEED, d: int = 1, held: int | None = None) -> tuple[Federation, bytes]:
    """Every node published a manifest; node 0 (the origin) holds all, node 1 the first ``held``
    (default all); then node 0 publishes ``d`` new records.  Returns its new envelope."""
    fed = Federation(origins, seed=seed, roster=True)
    envelopes = [node.publish(fed.now) for node in fed.nodes]
    fed.nodes[0].book.receive(envelopes, now=fed.now)
    fed.nodes[1].book.receive(envelopes[: origins if held is None else held], now=fed.now)
    for _ in range(d):
        fed.nodes[0].add_record(fed.rng)
    return fed, fed.nodes[0].publish(fed.now)


def test_changed_exchange_at_1000_origins_adds_under_2_kb_around_what_it_moves() -> None:
    fed, envelope = _pair(1000, d=1)
    origin, peer = fed.nodes[0], fed.nodes[1]
    wire = Wire(fed, peer)

    report = _sync(fed, peer, origin, wire)

    assert report.error is None and report.records == 1, report
    assert wire.steps == ["summary", "reconcile", "manifests", "records"], wire.steps
    moved = len(envelope) + sum(len(data) for _, data in origin.own.values())
    overhead = report.bytes_sent + report.bytes_received - moved
    # The whole-digest exchange sent ~141 B per origin each way here: ~282 KB.
    assert overhead <= 2048, (overhead, wire.bytes)
    assert wire.bytes["reconcile"] <= 1024, wire.bytes
    assert _sync(fed, peer, origin, Wire(fed, peer)).in_sync


def test_idle_exchange_is_one_summary_each_way_under_128_bytes() -> None:
    fed, _ = _pair(50, d=0)
    origin, peer = fed.nodes[0], fed.nodes[1]
    peer.book.receive(origin.store.chain_after(origin.id, 0, 10), now=fed.now)
    wire = Wire(fed, peer)

    report = _sync(fed, peer, origin, wire, records=False)

    assert report.in_sync and wire.steps == ["summary"]
    assert report.bytes_sent <= 128 and report.bytes_received <= 128


def _scenario(seed: int) -> Federation:
    """A small federation where nodes hold random prefixes of every chain, some evidence too."""
    rng = random.Random(seed)
    fed = Federation(rng.randrange(3, 7), seed=seed)
    chains: dict[int, list[bytes]] = {}
    for node in fed.nodes:
        chains[node.index] = []
        for _ in range(rng.randrange(0, 4)):
            for _ in range(rng.randrange(0, 3)):
                node.add_record(fed.rng)
            chains[node.index].append(node.publish(fed.now))
    for node in fed.nodes:
        for index, chain in chains.items():
            if index != node.index and chain:
                node.book.receive(chain[: rng.randrange(0, len(chain) + 1)], now=fed.now)
    if rng.random() < 0.4:
        fed.equivocate(rng.randrange(len(fed.nodes)))
    return fed


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exchanges=st.integers(1, 6))
def test_exchange_by_difference_ends_where_the_whole_digest_exchange_ends(seed: int, exchanges: int) -> None:
    new, old = _scenario(seed), _scenario(seed)
    rng = random.Random(seed)
    for _ in range(exchanges):
        i, j = rng.sample(range(len(new.nodes)), 2)
        ours = _sync(new, new.nodes[i], new.nodes[j], Wire(new, new.nodes[i]))
        theirs = _sync(old, old.nodes[i], old.nodes[j], Wire(old, old.nodes[i]), by_difference=False)
        assert ours.error is None and theirs.error is None, (ours, theirs)
        assert (ours.pulled, ours.pushed, ours.records) == (theirs.pulled, theirs.pushed, theirs.records)
        for a, b in zip(new.nodes, old.nodes, strict=True):
            assert new.view(a) == old.view(b)


def test_older_peer_answering_404_to_reconcile_gets_the_whole_digest() -> None:
    fed, _ = _pair(20, d=2)
    origin, peer = fed.nodes[0], fed.nodes[1]
    wire = Wire(fed, peer, unknown=frozenset({"reconcile"}))

    report = _sync(fed, peer, origin, wire)

    assert report.error is None and report.records == 2, report
    assert wire.steps == ["summary", "reconcile", "digest", "manifests", "records"], wire.steps
    assert _sync(fed, peer, origin, Wire(fed, peer)).in_sync


def test_table_that_does_not_peel_is_sent_larger() -> None:
    # The peer lacks 40 origins and the origin's new manifest: 42 keys differ, beyond the first
    # table (30 cells), within the second (120).
    fed, _ = _pair(60, d=1, held=20)
    origin, peer = fed.nodes[0], fed.nodes[1]
    wire = Wire(fed, peer)

    report = _sync(fed, peer, origin, wire)

    assert report.error is None, report
    assert wire.steps[:4] == ["summary", "reconcile", "reconcile", "manifests"], wire.steps
    assert peer.store.heads().keys() == origin.store.heads().keys()


def test_tables_that_never_peel_end_in_the_whole_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "SIZES", (3, 6))
    fed, _ = _pair(60, d=1, held=20)
    origin, peer = fed.nodes[0], fed.nodes[1]
    wire = Wire(fed, peer)

    report = _sync(fed, peer, origin, wire)

    assert report.error is None, report
    assert wire.steps[:5] == ["summary", "reconcile", "reconcile", "digest", "manifests"], wire.steps
    assert peer.store.heads().keys() == origin.store.heads().keys()


def test_lost_requests_and_answers_are_sent_again_and_the_exchange_completes() -> None:
    fed, _ = _pair(20, d=2)
    origin, peer = fed.nodes[0], fed.nodes[1]
    # Lost: the summary on the way, the reconcile answer, the records request twice.
    wire = Wire(fed, peer, lose=frozenset({0, 5, 6}), lose_answers=frozenset({2}))

    report = _sync(fed, peer, origin, wire)

    assert report.error is None and report.records == 2, report
    assert report.retries == 4
    assert _sync(fed, peer, origin, Wire(fed, peer)).in_sync


def test_lost_push_answer_is_resent_and_taken_as_a_duplicate() -> None:
    # The origin pulls from a peer that lacks its new manifest: it pushes, the answer is lost,
    # the push is sent again and answered "duplicate": the same state as one push.
    fed, _ = _pair(10, d=1)
    origin, peer = fed.nodes[0], fed.nodes[1]
    probe = Wire(fed, origin)
    _sync(fed, origin, peer, probe, records=False)
    assert "push" in probe.steps, probe.steps  # (the first run pushed; start again)

    fed, _ = _pair(10, d=1)
    origin, peer = fed.nodes[0], fed.nodes[1]
    push_at = probe.steps.index("push")
    wire = Wire(fed, origin, lose_answers=frozenset({push_at}))
    report = _sync(fed, origin, peer, wire, records=False)

    assert report.error is None, report
    assert wire.steps.count("push") == 1 and report.retries == 1
    assert report.pushed.duplicate == 1 and report.pushed.accepted == 0
    assert peer.store.heads()[origin.id].seq == origin.seq


def test_a_peer_that_never_answers_is_tried_a_bounded_number_of_times() -> None:
    fed, _ = _pair(5, d=1)
    wire = Wire(fed, fed.nodes[1], lose=frozenset(range(1000)))

    report = _sync(fed, fed.nodes[1], fed.nodes[0], wire)

    assert report.error is not None and wire.sends == MAX_ATTEMPTS


def test_resends_in_one_exchange_are_bounded() -> None:
    fed, _ = _pair(20, d=300)
    # Every request is lost three times before it gets through: the exchange's resends run out.
    lost = frozenset(i for i in range(1000) if i % MAX_ATTEMPTS != MAX_ATTEMPTS - 1)
    wire = Wire(fed, fed.nodes[1], lose=lost)

    report = _sync(fed, fed.nodes[1], fed.nodes[0], wire)

    assert report.error is not None and report.retries == MAX_RETRIES
    assert wire.sends == report.requests + MAX_RETRIES + 1


def test_every_protocol_step_is_routed_and_capped_by_the_node() -> None:
    from coop.federation.protocol import PATHS
    from coop.node.http.federation import _STEPS
    from coop.node.peering.serving import STEP_CAPS

    assert set(PATHS) <= _STEPS
    assert set(PATHS) - {"push"} <= set(STEP_CAPS)  # a push is capped by the node's config
