"""A refusal is booked under whoever is at fault, not under the honest peer that passed bytes on.

Found by the hostile-peer review of issue 12: a peer relaying another co-op's manifest signed by a
key this node does not know, and a peer serving exactly the bytes a hostile origin listed under a
wrong uid, were both blamed; and records sent but never asked for were counted as received.
"""

from __future__ import annotations

import msgspec

from coop.federation import protocol
from coop.federation.gossip import Book, Effects, Entry, MemoryBookStore, RecordRefusal
from coop.federation.protocol import RecordsMessage, SyncReport
from coop.governance import EvalConsent, License, Scope, public_key
from coop.node.peering.refusals import manifest_refusals, record_refusals

from factories import record_for

ORIGIN, H, SERVER = (public_key(bytes([n]) * 32).hex() for n in (1, 2, 3))


def test_an_unknown_key_in_a_relayed_manifest_is_booked_under_no_peer() -> None:
    refusals = manifest_refusals(
        ["unknown_key", "bad_signature"], at=1, step="push", node_id=SERVER, keyid=SERVER
    )
    by_reason = {r.reason: r for r in refusals}
    assert by_reason["unknown_key"].node_id is None and by_reason["unknown_key"].keyid is None
    assert by_reason["bad_signature"].node_id == SERVER  # a forged signature is still the sender's


def test_the_listed_bytes_under_a_wrong_entry_blame_the_listing_origin_not_the_server() -> None:
    listed = RecordRefusal(H, "h-0004", "a" * 64, "record_mismatch", "uid differs", served_as_listed=True)
    corrupt = RecordRefusal(H, "h-0005", "b" * 64, "record_mismatch", "not a record")
    kept = record_refusals([listed, corrupt], at=1, node_id=SERVER)
    assert [r.node_id for r in kept] == [H, SERVER]


def _book_with(origin: str, entry: Entry) -> Book:
    store = MemoryBookStore()
    store.apply(Effects(origin=origin, store=(), added=(entry,), tombstones=()))
    return Book("f" * 64, {ORIGIN: ORIGIN, H: H}, store)


def test_a_book_marks_refused_bytes_that_hash_as_listed() -> None:
    entry, data = record_for(Entry("o-1", "", License.CC0, "train-ai=y", EvalConsent.YES, Scope.PUBLIC))
    relisted = msgspec.structs.replace(entry, uid="h-0004")  # H lists ORIGIN's record under its own uid
    book = _book_with(H, relisted)
    (refusal,) = book.accept_records([(H, relisted)], {entry.hash: data})
    assert refusal.served_as_listed
    (garbage,) = book.accept_records([(H, relisted)], {entry.hash: b'{"not": "it"}'})
    assert not garbage.served_as_listed


class _Link:
    def __init__(self, answer: RecordsMessage) -> None:
        self.answer = answer

    def post(self, step: str, message: object, kind: type[RecordsMessage]) -> RecordsMessage:
        return self.answer


def test_records_nobody_asked_for_are_not_counted_as_received() -> None:
    entry, data = record_for(Entry("o-1", "", License.CC0, "train-ai=y", EvalConsent.YES, Scope.PUBLIC))
    extra, extra_data = record_for(Entry("o-2", "", License.CC0, "train-ai=y", EvalConsent.YES, Scope.PUBLIC))
    book = _book_with(ORIGIN, entry)
    book.record_wants = lambda *, limit=0: [(ORIGIN, entry)]  # type: ignore[method-assign]
    answer = RecordsMessage(
        records={
            entry.hash: msgspec.Raw(data),
            extra.hash: msgspec.Raw(extra_data),
            "c" * 64: msgspec.Raw(b"{}"),
        }
    )
    report = SyncReport(peer=SERVER)
    protocol._pull_records(_Link(answer), book, report)  # type: ignore[arg-type]
    assert report.records == 1  # the one asked for and kept; the two unasked are ignored
