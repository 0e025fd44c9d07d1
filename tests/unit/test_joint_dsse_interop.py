"""An independent DSSE implementation (securesystemslib) verifies our joint envelopes."""

from __future__ import annotations

import json

import msgspec
import pytest

from coop.federation.joint import (
    ACTION_PAYLOAD_TYPE,
    STATEMENT_PAYLOAD_TYPE,
    JointAction,
    JointKind,
    JointStatement,
    action_id,
    make_action,
    make_statement,
)
from coop.governance.signing import Signer

dsse = pytest.importorskip("securesystemslib.dsse")
signer_module = pytest.importorskip("securesystemslib.signer")
exceptions = pytest.importorskip("securesystemslib.exceptions")

SIGNERS = [Signer(bytes([i + 71]) * 32) for i in range(2)]
IDS = sorted(s.public_key.hex() for s in SIGNERS)
NOW = 1_700_000_000


def sslib_key(signer: Signer) -> object:
    key = signer.public_key.hex()
    return signer_module.SSlibKey(key, "ed25519", "ed25519", {"public": key})


def test_securesystemslib_verifies_action_and_statement() -> None:
    proposer = next(s for s in SIGNERS if s.public_key.hex() == IDS[0])
    other = next(s for s in SIGNERS if s is not proposer)
    action = JointAction(
        proposer=IDS[0],
        kind=JointKind.FREEZE,
        reason="together",
        starts_at=NOW,
        review_at=NOW + 86_400,
        threshold=2,
        coops=tuple(IDS),
        created_at=NOW,
        nonce="1" * 32,
    )
    envelope = dsse.Envelope.from_dict(msgspec.json.decode(make_action(action, proposer)))
    assert envelope.payload_type == ACTION_PAYLOAD_TYPE
    assert set(envelope.verify([sslib_key(proposer)], 1)) == {proposer.public_key.hex()}
    assert json.loads(envelope.payload) == json.loads(msgspec.json.encode(action))
    the_id = action_id(envelope.payload)

    statement = JointStatement(
        action=the_id, coop=other.public_key.hex(), decision="sign", at=NOW, via="vote 7"
    )
    envelope = dsse.Envelope.from_dict(msgspec.json.decode(make_statement(statement, other)))
    assert envelope.payload_type == STATEMENT_PAYLOAD_TYPE
    assert set(envelope.verify([sslib_key(other)], 1)) == {other.public_key.hex()}
    # The other co-op's key does not verify it: securesystemslib refuses too.
    with pytest.raises(exceptions.VerificationError):
        envelope.verify([sslib_key(proposer)], 1)
