"""The federation roster's trust rules (TUF root rotation) hold for any signer set and threshold."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coop.federation.errors import RosterError, RosterReason
from coop.federation.roster import (
    Admit,
    Member,
    Remove,
    Rotate,
    SetThreshold,
    Trusted,
    add_signature,
    apply_chain,
    check_update,
    create_roster,
    frozen,
    merge_signatures,
    next_version,
    roster_bytes,
    sign_envelope,
    trust_root,
    verify_update,
)
from coop.governance.signing import Signer

SIGNERS = [Signer(bytes([i + 1]) * 32) for i in range(8)]
FED = "ab" * 16
NOW = 1_700_000_000


def member(i: int) -> Member:
    key = SIGNERS[i].public_key.hex()
    return Member(id=key, key=key, name=f"coop{i}", url=f"http://127.0.0.1:{9000 + i}")


def roster_of(n: int, k: int) -> Trusted:
    """A trusted version listing members 0..n-1 with threshold k (built by admissions from 0)."""
    trusted = create_roster(
        federation=FED, name="fed", founder=member(0), threshold=1, expires_at=NOW + 1000, signer=SIGNERS[0]
    )
    if n == 1 and k == 1:
        return trusted
    changes = [Admit(member(i)) for i in range(1, n)] + [SetThreshold(k)]
    candidate = next_version(trusted, changes)
    data = sign_envelope(roster_bytes(candidate), SIGNERS[:n])
    return verify_update(trusted, data)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_roster_update_is_trusted_only_with_k_old_and_k_new_signatures(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n), label="k")
    trusted = roster_of(n, k)
    new_k = data.draw(st.integers(1, n), label="new_k")
    candidate = next_version(trusted, [SetThreshold(new_k)])
    signers = data.draw(st.sets(st.integers(0, n - 1)), label="signers")
    envelope = sign_envelope(roster_bytes(candidate), [SIGNERS[i] for i in sorted(signers)])
    verdict = check_update(trusted, envelope)
    assert bool(verdict) == (len(signers) >= max(k, new_k))
    if not verdict:
        assert verdict.reason in (RosterReason.UNDER_SIGNED_OLD, RosterReason.UNDER_SIGNED_NEW)
        with pytest.raises(RosterError):
            verify_update(trusted, envelope)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), copies=st.integers(2, 6))
def test_roster_duplicate_signatures_of_one_key_count_once(n: int, copies: int) -> None:
    trusted = roster_of(n, n)
    candidate = next_version(trusted, [SetThreshold(n)])
    payload = roster_bytes(candidate)
    # n - 1 distinct members, one of them signing many times: still one short.
    envelope = sign_envelope(payload, [SIGNERS[0]] * copies + SIGNERS[1 : n - 1])
    assert not check_update(trusted, envelope) if n > 1 else check_update(trusted, envelope)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), stranger=st.integers(6, 7))
def test_roster_signatures_of_wrong_keys_never_count(n: int, stranger: int) -> None:
    trusted = roster_of(n, n)
    candidate = next_version(trusted, [SetThreshold(1)])
    payload = roster_bytes(candidate)
    envelope = sign_envelope(payload, [SIGNERS[stranger], *SIGNERS[: n - 1]])
    assert not check_update(trusted, envelope)
    # A signature claiming a member's key id but made by another key does not count either.
    forged = json.loads(sign_envelope(payload, [SIGNERS[stranger]]))
    forged["signatures"][0]["keyid"] = SIGNERS[0].public_key.hex()
    honest = json.loads(sign_envelope(payload, SIGNERS[1:n]))
    forged["signatures"] += honest["signatures"]
    assert not check_update(trusted, json.dumps(forged).encode())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), forged=st.integers(6, 7))
def test_roster_forged_member_without_its_own_signature_is_refused(n: int, forged: int) -> None:
    """Admitting a key needs the key's own signature (proof of possession), whatever else signed."""
    trusted = roster_of(n, 1)
    candidate = next_version(trusted, [Admit(member(forged))])
    assert check_update(trusted, sign_envelope(roster_bytes(candidate), SIGNERS[:n])).reason is (
        RosterReason.UNPROVEN_KEY
    )
    assert check_update(trusted, sign_envelope(roster_bytes(candidate), [*SIGNERS[:n], SIGNERS[forged]]))
    # Rotating a member's key needs the new key's signature too.
    rotated = next_version(trusted, [Rotate(member(0).id, SIGNERS[forged].public_key.hex())])
    assert not check_update(trusted, sign_envelope(roster_bytes(rotated), SIGNERS[:n]))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 5))
def test_roster_removed_member_signature_no_longer_counts(n: int) -> None:
    trusted = roster_of(n, 1)
    removed = n - 1
    without = verify_update(
        trusted,
        sign_envelope(roster_bytes(next_version(trusted, [Remove(member(removed).id)])), SIGNERS[: n - 1]),
    )
    after = next_version(without, [SetThreshold(1)])
    assert not check_update(without, sign_envelope(roster_bytes(after), [SIGNERS[removed]]))
    assert check_update(without, sign_envelope(roster_bytes(after), [SIGNERS[0]]))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), steps=st.integers(2, 5))
def test_roster_rollback_and_gap_are_refused_and_a_chain_applies_in_order(n: int, steps: int) -> None:
    root = roster_of(n, 1)
    chain = [root]
    for _ in range(steps):
        candidate = next_version(chain[-1], [SetThreshold(1)])
        chain.append(verify_update(chain[-1], sign_envelope(roster_bytes(candidate), SIGNERS[:n])))
    # Any order in: applied in version order; the newest is trusted.
    newest, applied, refused, is_frozen = apply_chain(
        root, [t.envelope for t in reversed(chain[1:])], now=NOW
    )
    assert newest.hash == chain[-1].hash and len(applied) == steps and not refused and not is_frozen
    # Every older version is a rollback now; a version two ahead is a gap.
    for old in chain:
        assert check_update(newest, old.envelope).reason is RosterReason.ROLLBACK
    assert check_update(chain[0], chain[2].envelope).reason is RosterReason.GAP


def test_roster_freeze_is_reported_when_the_newest_trusted_version_expired() -> None:
    trusted = roster_of(2, 1)
    assert not frozen(trusted.roster, now=NOW)
    assert frozen(trusted.roster, now=NOW + 1000)
    _newest, _applied, _refused, is_frozen = apply_chain(trusted, [], now=NOW + 5000)
    assert is_frozen
    # Extending the expiry is a change like any other: k signatures unfreeze it.
    root, was_frozen = trust_root(trusted.envelope, now=NOW + 5000)
    assert was_frozen and root.hash == trusted.hash


def test_roster_root_needs_k_of_its_own_members() -> None:
    trusted = roster_of(3, 2)
    payload = base64.b64decode(json.loads(trusted.envelope)["payload"])
    with pytest.raises(RosterError):
        trust_root(sign_envelope(payload, SIGNERS[:1]), now=NOW)
    assert trust_root(sign_envelope(payload, SIGNERS[:2]), now=NOW)[0].hash == trusted.hash


@settings(max_examples=20, deadline=None)
@given(order=st.permutations(list(range(4))))
def test_roster_proposal_signatures_merge_in_any_order(order: list[int]) -> None:
    trusted = roster_of(4, 3)
    payload = roster_bytes(next_version(trusted, [SetThreshold(2)]))
    copies = [sign_envelope(payload, [SIGNERS[i]]) for i in order]
    merged = copies[0]
    for copy in copies[1:]:
        merged = merge_signatures(merged, copy)
    assert check_update(trusted, merged)
    assert len(json.loads(merged)["signatures"]) == 4
    # Adding a key's signature twice keeps one.
    assert len(json.loads(add_signature(merged, SIGNERS[0]))["signatures"]) == 4


def test_roster_interop_securesystemslib_verifies_each_signature() -> None:
    """An independent DSSE implementation verifies every signature of our roster envelope."""
    dsse = pytest.importorskip("securesystemslib.dsse")
    from securesystemslib.signer import SSlibKey

    trusted = roster_of(3, 2)
    envelope = dsse.Envelope.from_dict(msgspec.json.decode(trusted.envelope))
    keys = [
        SSlibKey(s.public_key.hex(), "ed25519", "ed25519", {"public": s.public_key.hex()})
        for s in SIGNERS[:3]
    ]
    assert set(envelope.verify(keys, 3)) == {s.public_key.hex() for s in SIGNERS[:3]}
    assert json.loads(envelope.payload) == json.loads(msgspec.json.encode(trusted.roster))
