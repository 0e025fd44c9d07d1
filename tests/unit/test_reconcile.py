"""Set reconciliation of digests (coop.federation.reconcile): a decode is exact or says it failed."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.federation.errors import FederationError
from coop.federation.gossip import Book, DigestItem, MemoryBookStore
from coop.federation.protocol import Responder
from coop.federation.reconcile import (
    CELL_BYTES,
    SIZES,
    ReconcileMessage,
    ReconcileRequest,
    Sketch,
    answer,
    item_key,
    remote_digest,
    request,
)

SEED = 20261204
KEYS = st.integers(min_value=0, max_value=2**64 - 1)


def _hex(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _digest(rng: random.Random, origins: int) -> dict[str, DigestItem]:
    return {_hex(rng): DigestItem(seq=rng.randrange(1, 50), hash=_hex(rng)) for _ in range(origins)}


@settings(max_examples=200, deadline=None)
@given(
    common=st.sets(KEYS, max_size=200),
    ours=st.sets(KEYS, max_size=12),
    theirs=st.sets(KEYS, max_size=12),
    cells=st.sampled_from(SIZES[:2]),
)
def test_sketch_decode_is_the_symmetric_difference_or_a_failure(
    common: set[int], ours: set[int], theirs: set[int], cells: int
) -> None:
    ours, theirs = ours - common, theirs - common - ours
    mine = Sketch.of(common | ours, cells)
    other = Sketch.of(common | theirs, cells)
    # Through the wire format too: the table is sent packed.
    decoded = mine.minus(Sketch.from_bytes(other.to_bytes())).decode()
    assert decoded is None or decoded == (ours, theirs)


def test_sketch_decodes_differences_within_its_capacity_nearly_always() -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    for cells, keys in ((SIZES[0], 6), (SIZES[1], 40)):
        decoded = 0
        for _ in range(200):
            common = [rng.getrandbits(64) for _ in range(100)]
            ours = {rng.getrandbits(64) for _ in range(keys // 2)}
            theirs = {rng.getrandbits(64) for _ in range(keys - keys // 2)}
            got = (
                Sketch.of(common + list(ours), cells).minus(Sketch.of(common + list(theirs), cells)).decode()
            )
            if got is not None:
                assert got == (ours, theirs)
                decoded += 1
        assert decoded >= 190, (cells, keys, decoded)


def test_sketch_over_capacity_fails_and_never_answers_wrong() -> None:
    rng = random.Random(SEED + 1)
    for _ in range(50):
        ours = {rng.getrandbits(64) for _ in range(60)}
        assert Sketch.of(ours, SIZES[0]).minus(Sketch(SIZES[0])).decode() is None


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), origins=st.integers(0, 60), changed=st.integers(0, 8))
def test_answer_rebuilds_the_responders_digest_exactly_or_fails(
    seed: int, origins: int, changed: int
) -> None:
    rng = random.Random(seed)
    local = _digest(rng, origins)
    remote = dict(local)
    for origin in rng.sample(sorted(local), min(changed, len(local))):
        kind = rng.randrange(3)
        if kind == 0:
            del remote[origin]  # the peer lacks an origin we hold
        else:  # the peer is ahead, or holds evidence we lack
            remote[origin] = DigestItem(seq=local[origin].seq + kind, hash=_hex(rng), evidence=(_hex(rng),))
    for _ in range(rng.randrange(3)):
        remote[_hex(rng)] = DigestItem(seq=1, hash=_hex(rng))  # an origin we do not hold
    for cells in SIZES:
        answered = answer(remote, request(local, cells))
        rebuilt = remote_digest(local, answered)
        if answered.decoded:
            assert rebuilt == remote
            return
        assert rebuilt is None
    pytest.fail("no table size decoded a difference of at most 14 keys")


def test_answer_of_equal_digests_is_empty() -> None:
    local = _digest(random.Random(SEED), 1000)
    answered = answer(local, request(local, SIZES[0]))
    assert answered == ReconcileMessage(decoded=True)
    assert remote_digest(local, answered) == local


def test_answer_refuses_a_check_that_does_not_match_the_peeled_set() -> None:
    local = _digest(random.Random(SEED), 20)
    asked = request(local, SIZES[0])
    assert not answer(local, ReconcileRequest(cells=asked.cells, check="0" * 32)).decoded


def test_remote_digest_refuses_an_answer_that_does_not_fit_ours() -> None:
    rng = random.Random(SEED)
    local = _digest(rng, 5)
    origin = next(iter(local))
    unknown = rng.getrandbits(64).to_bytes(8, "big")
    # A key we never had, and an origin of ours replaced without its old item named.
    assert remote_digest(local, ReconcileMessage(decoded=True, yours=unknown)) is None
    replaced = ReconcileMessage(decoded=True, items={origin: DigestItem(seq=99, hash=_hex(rng))})
    assert remote_digest(local, replaced) is None
    named = ReconcileMessage(
        decoded=True,
        items={origin: DigestItem(seq=99, hash="f" * 64)},
        yours=item_key(origin, local[origin]).to_bytes(8, "big"),
    )
    assert remote_digest(local, named) == {**local, origin: DigestItem(seq=99, hash="f" * 64)}


@pytest.mark.parametrize(
    "cells",
    [b"", b"x" * (CELL_BYTES - 1), b"\0" * CELL_BYTES * 2, b"\0" * CELL_BYTES * (SIZES[-1] + 3)],
    ids=["empty", "partial-cell", "not-a-multiple-of-three", "too-large"],
)
def test_responder_refuses_a_malformed_table(cells: bytes) -> None:
    responder = Responder(Book("a" * 64, {}, MemoryBookStore()), records=None)  # type: ignore[arg-type]
    body = ReconcileRequest(cells=cells, check="0" * 32)
    with pytest.raises(FederationError):
        responder.handle("reconcile", msgspec.json.encode(body), now=0)
