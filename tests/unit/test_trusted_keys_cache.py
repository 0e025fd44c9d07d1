"""Book.trusted_keys is kept between receives (issue 14: rebuilt over 10,000 members on every
receive, it dominated a changed round), and still follows the pins and key rotations."""

from __future__ import annotations

from test_gossip import NOW, Origin, only, seed

from coop.federation import Accepted, Book, MemoryBookStore, Reason, Rejected, seal_manifest
from coop.federation.gossip import DigestItem
from coop.governance import public_key
from coop.governance.signing import Signer


def test_trusted_keys_are_kept_between_receives_until_something_changes() -> None:
    a, b = Origin(1), Origin(2)
    book = Book("f" * 64, {a.id: a.id, b.id: b.id}, MemoryBookStore())
    first = book.trusted_keys()
    assert first == {a.id: a.id, b.id: b.id}
    assert isinstance(only(book.receive([a.manifest([a.entry()])], now=NOW)), Accepted)
    assert book.trusted_keys() is first  # same key for a: nothing to rebuild


def test_a_rotation_accepted_in_one_receive_is_trusted_in_the_next() -> None:
    origin = Origin(1)
    book = Book("f" * 64, {origin.id: origin.id}, MemoryBookStore())
    new = seed(7)
    assert isinstance(only(book.receive([origin.manifest([origin.entry()])], now=NOW)), Accepted)
    assert origin.id in book.trusted_keys()
    rotation = seal_manifest(
        origin.payload(rotate_to=public_key(new).hex()), [Signer(origin.seed), Signer(new)]
    )
    assert isinstance(only(book.receive([rotation], now=NOW)), Accepted)
    assert book.trusted_keys() == {public_key(new).hex(): origin.id}
    after = seal_manifest(origin.payload([origin.entry()], key=public_key(new).hex()), [Signer(new)])
    assert isinstance(only(book.receive([after], now=NOW)), Accepted)


def test_replacing_or_editing_the_pins_takes_effect() -> None:
    a, b = Origin(1), Origin(2)
    book = Book("f" * 64, {a.id: a.id}, MemoryBookStore())
    assert book.trusted_keys() == {a.id: a.id}
    book.pinned = {b.id: b.id}  # replaced: a is no longer trusted, b is
    decision = only(book.receive([a.manifest([a.entry()], commit=False)], now=NOW))
    assert isinstance(decision, Rejected) and decision.reason is Reason.UNKNOWN_KEY
    assert isinstance(only(book.receive([b.manifest([b.entry()])], now=NOW)), Accepted)
    book.pinned[a.id] = a.id  # added in place: noticed
    assert isinstance(only(book.receive([a.manifest([a.entry()])], now=NOW)), Accepted)


def test_wants_and_serve_test_the_pins_without_copying_them() -> None:
    a, stranger = Origin(1), Origin(3)
    book = Book("f" * 64, {a.id: a.id}, MemoryBookStore())
    book.receive([a.manifest([a.entry()])], now=NOW)
    known = book.known()
    assert a.id in known and book.self_id in known and stranger.id not in known
    remote = {o.id: DigestItem(seq=5, hash="0" * 64, evidence=()) for o in (a, stranger)}
    assert [w.origin for w in book.wants(remote)] == [a.id]
    book.pinned = {stranger.id: stranger.id}
    assert [w.origin for w in book.wants(remote)] == [stranger.id]
