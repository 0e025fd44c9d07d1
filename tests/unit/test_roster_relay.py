"""Our own manifests, once they name a roster, go only to its members (a pinned non-member
would otherwise learn every federation-scope record's uid, hash and terms from them)."""

from __future__ import annotations

from coop.federation import Head
from coop.federation.gossip import _may_relay
from coop.governance import Embargo

FED = "ab" * 16
SELF, MEMBER, PINNED_OUTSIDER = "11" * 32, "22" * 32, "44" * 32


def test_our_manifests_naming_a_roster_go_to_its_members_only() -> None:
    members = frozenset({SELF, MEMBER})
    head = Head(seq=3, hash="0" * 64, key=SELF, embargo=Embargo(), roster=FED)
    heads = {SELF: head}
    assert _may_relay(SELF, MEMBER, SELF, heads, {FED: members})
    assert not _may_relay(SELF, PINNED_OUTSIDER, SELF, heads, {FED: members})
    # A peer always gets its own manifests back.
    assert _may_relay(PINNED_OUTSIDER, PINNED_OUTSIDER, SELF, heads, {FED: members})


def test_without_a_roster_our_manifests_go_to_every_pinned_peer_as_before() -> None:
    head = Head(seq=3, hash="0" * 64, key=SELF, embargo=Embargo(), federation=(MEMBER,))
    assert _may_relay(SELF, PINNED_OUTSIDER, SELF, {SELF: head})
    assert _may_relay(SELF, PINNED_OUTSIDER, SELF, {})  # nothing issued yet


def test_an_expired_roster_reaches_no_one_in_the_policy_either() -> None:
    """The freeze holds where record bytes are served and federated releases are cut, not only in the book."""
    import sqlite3
    from contextlib import closing

    from coop.federation.roster import Member, create_roster
    from coop.governance.signing import Signer
    from coop.node.policy import roster_scopes

    signer = Signer(bytes(range(32)))
    key = signer.public_key.hex()
    trusted = create_roster(
        federation=FED,
        name="F",
        founder=Member(id=key, key=key, name="A", url="http://127.0.0.1:1"),
        threshold=1,
        expires_at=1_000,
        signer=signer,
    )
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(
            "CREATE TABLE roster_versions (federation TEXT, version INTEGER, hash TEXT, envelope BLOB, added_at INTEGER)"
        )
        conn.execute(
            "INSERT INTO roster_versions VALUES (?, 1, ?, ?, 0)", (FED, trusted.hash, trusted.envelope)
        )
        assert roster_scopes(conn, now=999) == {FED: frozenset({key})}
        assert roster_scopes(conn, now=1_000) == {}


def test_a_roster_payload_not_in_canonical_form_is_refused() -> None:
    """One content, one hash: a re-encoded version (same roster, other bytes) is not a second version."""
    import json

    import pytest

    from coop.federation.errors import RosterError
    from coop.federation.roster import Member, create_roster, open_roster
    from coop.governance.envelope import seal
    from coop.governance.signing import Signer

    signer = Signer(bytes(range(32)))
    key = signer.public_key.hex()
    trusted = create_roster(
        federation=FED,
        name="F",
        founder=Member(id=key, key=key, name="A", url="http://127.0.0.1:1"),
        threshold=1,
        expires_at=10**9,
        signer=signer,
    )
    assert open_roster(trusted.envelope).hash == trusted.hash
    opened = open_roster(trusted.envelope)
    spaced = json.dumps(json.loads(opened.payload), indent=1).encode()
    with pytest.raises(RosterError, match="canonical"):
        open_roster(seal(spaced, opened.envelope.payload_type, [signer]))
