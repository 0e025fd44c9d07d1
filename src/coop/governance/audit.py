"""The append-only audit log: hash-chained entries, each signed by the node's key.

An entry's hash is SHA-256 over its canonical bytes (seq, time, actor,
action, payload, previous hash); the node signs that hash.  Verification
recomputes everything from the stored values and names the first entry that
was altered, removed or reordered.  (Cutting entries off the end leaves a
shorter valid chain; the head hash travels in the node's manifests so peers
can notice.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from coop.governance.canonical import canonical_bytes, sha256_hex
from coop.governance.signing import sign, verify

__all__ = ["GENESIS", "AuditEntry", "ChainReport", "append_entry", "entry_hash", "verify_chain"]

GENESIS: Final = "0" * 64


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: int
    actor: str
    action: str
    payload: Any
    prev: str
    hash: str
    signature: str


class ChainReport(msgspec.Struct, frozen=True):
    """Truthy when the whole chain checks; otherwise says where and why it breaks."""

    checked: int
    first_bad: int | None = None
    problem: str | None = None
    key: str = ""  # the signing key (hex) in force after the last entry checked

    def __bool__(self) -> bool:
        return self.first_bad is None


def entry_hash(*, seq: int, at: int, actor: str, action: str, payload: Any, prev: str) -> str:
    body = {"seq": seq, "at": at, "actor": actor, "action": action, "payload": payload, "prev": prev}
    return sha256_hex(canonical_bytes(body))


def append_entry(
    head: AuditEntry | None, *, at: int, actor: str, action: str, payload: Any, seed: bytes
) -> AuditEntry:
    """The entry that follows ``head`` (or starts the chain), hashed and signed."""
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    payload = msgspec.json.decode(canonical_bytes(payload))  # store exactly what was hashed
    digest = entry_hash(seq=seq, at=at, actor=actor, action=action, payload=payload, prev=prev)
    signature = sign(seed, bytes.fromhex(digest)).hex()
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        payload=payload,
        prev=prev,
        hash=digest,
        signature=signature,
    )


ROTATE: Final = "identity.rotate"


def verify_chain(entries: Iterable[AuditEntry], public_key: bytes) -> ChainReport:
    """Check sequence, links, hashes and signatures from the first entry on.

    ``public_key`` is the key the chain starts with (the node's first key, its node
    id).  A key rotation is itself an entry (``identity.rotate``, naming the old and
    the new key): from it on, entries must carry the new key's signature.  The
    report's ``key`` is the key in force at the end, for the caller to compare with
    the key the node signs with now.
    """
    key = public_key
    expected_seq = 1
    prev = GENESIS
    checked = 0
    for entry in entries:
        if entry.seq != expected_seq:
            what = "missing" if entry.seq > expected_seq else "out of order"
            return ChainReport(
                checked, expected_seq, f"entry {expected_seq} is {what} (found {entry.seq} next)"
            )
        if entry.prev != prev:
            return ChainReport(checked, entry.seq, f"entry {entry.seq} does not follow entry {entry.seq - 1}")
        digest = entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            payload=entry.payload,
            prev=entry.prev,
        )
        if digest != entry.hash:
            return ChainReport(checked, entry.seq, f"entry {entry.seq} was altered (its hash does not match)")
        try:
            signature = bytes.fromhex(entry.signature)
        except ValueError:
            signature = b""
        if (
            entry.action == ROTATE
            and isinstance(entry.payload, dict)
            and entry.payload.get("old_key") == key.hex()
        ):
            try:
                key = bytes.fromhex(str(entry.payload.get("new_key", "")))
            except ValueError:
                return ChainReport(
                    checked, entry.seq, f"entry {entry.seq} names a malformed new key", key.hex()
                )
        if not verify(key, bytes.fromhex(digest), signature):
            return ChainReport(
                checked,
                entry.seq,
                f"entry {entry.seq} is not signed by this node's key at that time",
                key.hex(),
            )
        prev = entry.hash
        expected_seq += 1
        checked += 1
    return ChainReport(checked, key=key.hex())
