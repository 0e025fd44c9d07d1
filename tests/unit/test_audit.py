"""The audit chain: any altered, removed, reordered or cut-off entry is named; only this node's key signs."""

from __future__ import annotations

import msgspec
import pytest
from nacl.signing import SigningKey

from coop.governance import AuditEntry, append_entry, verify_chain
from coop.governance.audit import sign_head
from coop.governance.signing import Signer

SEED = bytes(range(32))
KEY = bytes(SigningKey(SEED).verify_key)


def _chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(n):
        head = entries[-1] if entries else None
        entries.append(
            append_entry(
                head,
                at=1000 + i,
                actor="ada",
                action="settings.change",
                payload={"n": i},
                signer=Signer(SEED),
            )
        )
    return entries


def test_verify_chain_intact_chain_checks() -> None:
    report = verify_chain(_chain(5), KEY)
    assert report
    assert report.checked == 5


def test_verify_chain_altered_payload_names_entry() -> None:
    entries = _chain(5)
    entries[2] = msgspec.structs.replace(entries[2], payload={"n": 99})
    report = verify_chain(entries, KEY)
    assert not report
    assert report.first_bad == 3
    assert "altered" in (report.problem or "")


def test_verify_chain_altered_actor_names_entry() -> None:
    entries = _chain(3)
    entries[0] = msgspec.structs.replace(entries[0], actor="mallory")
    assert verify_chain(entries, KEY).first_bad == 1


def test_verify_chain_removed_entry_names_the_gap() -> None:
    entries = _chain(5)
    del entries[1]
    report = verify_chain(entries, KEY)
    assert report.first_bad == 2
    assert "missing" in (report.problem or "")


def test_verify_chain_reordered_entries_are_caught() -> None:
    entries = _chain(4)
    entries[1], entries[2] = entries[2], entries[1]
    report = verify_chain(entries, KEY)
    assert report.first_bad == 2


def test_verify_chain_rehashed_forgery_fails_signature() -> None:
    # Someone who edits an entry and recomputes every hash still cannot sign as the node.
    forged: list[AuditEntry] = []
    other = bytes(range(1, 33))
    for entry in _chain(3):
        head = forged[-1] if forged else None
        forged.append(
            append_entry(
                head,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                payload={"x": 1},
                signer=Signer(other),
            )
        )
    report = verify_chain(forged, KEY)
    assert report.first_bad == 1
    assert "not signed" in (report.problem or "")


@pytest.mark.parametrize("signature", ["", "zz", "00" * 64])
def test_verify_chain_bad_signature_text_is_not_a_crash(signature: str) -> None:
    entries = _chain(2)
    entries[1] = msgspec.structs.replace(entries[1], signature=signature)
    assert verify_chain(entries, KEY).first_bad == 2


def _rotate(entries: list[AuditEntry], old: bytes, new: bytes, *, signer: bytes) -> None:
    payload = {
        "old_key": bytes(SigningKey(old).verify_key).hex(),
        "new_key": bytes(SigningKey(new).verify_key).hex(),
    }
    entries.append(
        append_entry(
            entries[-1],
            at=2000,
            actor="ada",
            action="identity.rotate",
            payload=payload,
            signer=Signer(signer),
        )
    )


def test_verify_chain_follows_a_key_rotation_and_ends_on_the_new_key() -> None:
    new = bytes(range(1, 33))
    entries = _chain(3)
    _rotate(entries, SEED, new, signer=new)
    entries.append(
        append_entry(entries[-1], at=3000, actor="ada", action="release.cut", payload={}, signer=Signer(new))
    )
    report = verify_chain(entries, KEY)
    assert report and report.checked == 5
    assert report.key == bytes(SigningKey(new).verify_key).hex()
    # After the rotation, an entry signed with the old key no longer counts.
    entries.append(
        append_entry(entries[-1], at=4000, actor="ada", action="release.cut", payload={}, signer=Signer(SEED))
    )
    late = verify_chain(entries, KEY)
    assert not late and late.first_bad == 6


def test_verify_chain_ignores_a_rotation_from_a_key_not_in_force() -> None:
    stranger, other = bytes(range(2, 34)), bytes(range(3, 35))
    entries = _chain(2)
    _rotate(entries, stranger, other, signer=other)  # names a key the chain never had
    report = verify_chain(entries, KEY)
    assert not report and report.first_bad == 3


# -- the signed head: a cut-off tail ------------------------------------------------------


def test_verify_chain_cut_off_tail_is_caught_by_the_signed_head() -> None:
    entries = _chain(5)
    head = sign_head(5, entries[-1].hash, Signer(SEED))
    report = verify_chain(entries[:3], KEY, head=head, current_key=KEY)
    assert not report
    assert report.first_bad == 4
    assert report.problem == (
        "the log ends at entry 3 but the signed head says 5: entries 4 to 5 were cut off"
    )


def test_verify_chain_tail_cut_and_written_again_is_caught_by_the_signed_head() -> None:
    entries = _chain(5)
    head = sign_head(5, entries[-1].hash, Signer(SEED))
    rewritten = entries[:3]
    for i in range(2):  # validly signed entries 4 and 5, but not the ones the head names
        rewritten.append(
            append_entry(rewritten[-1], at=5000 + i, actor="ada", action="x", payload={}, signer=Signer(SEED))
        )
    report = verify_chain(rewritten, KEY, head=head, current_key=KEY)
    assert not report
    assert report.first_bad == 5
    assert "not the one the signed head names" in (report.problem or "")


def test_verify_chain_head_not_signed_by_the_node_is_a_problem() -> None:
    entries = _chain(3)
    forged = sign_head(3, entries[-1].hash, Signer(bytes(range(1, 33))))
    report = verify_chain(entries, KEY, head=forged, current_key=KEY)
    assert not report
    assert report.first_bad is None
    assert "not signed by this node's key" in (report.problem or "")


def test_verify_chain_head_matching_the_last_entry_checks_without_warning() -> None:
    entries = _chain(4)
    report = verify_chain(entries, KEY, head=sign_head(4, entries[-1].hash, Signer(SEED)), current_key=KEY)
    assert report and report.checked == 4
    assert report.warning is None


def test_verify_chain_head_behind_the_log_only_warns() -> None:
    entries = _chain(4)
    report = verify_chain(entries, KEY, head=sign_head(2, entries[1].hash, Signer(SEED)), current_key=KEY)
    assert report
    assert "2 entries behind the log" in (report.warning or "")


def test_verify_chain_without_a_head_warns_only_when_one_is_expected() -> None:
    entries = _chain(2)
    assert verify_chain(entries, KEY).warning is None
    report = verify_chain(entries, KEY, expect_head=True)
    assert report
    assert "no signed head yet" in (report.warning or "")


def test_verify_chain_head_signed_by_the_key_before_a_rotation_still_checks() -> None:
    # Written just before the rotation, not yet rewritten with the new key (a crash in between).
    new = bytes(range(1, 33))
    entries = _chain(3)
    head = sign_head(3, entries[-1].hash, Signer(SEED))
    _rotate(entries, SEED, new, signer=new)
    report = verify_chain(entries, KEY, head=head, current_key=bytes(SigningKey(new).verify_key))
    assert report, report.problem
    assert "behind" in (report.warning or "")
