"""The append-only audit log: hash-chained entries, each signed by the node's key.

An entry's hash is SHA-256 over its canonical bytes (seq, time, actor,
action, payload, previous hash); the node signs that hash.  Verification
recomputes everything from the stored values and names the first entry that
was altered, removed or reordered.

Cutting entries off the end leaves a shorter chain that is valid on its own,
so the node also keeps a **signed head** outside the database: the number and
hash of the latest entry, signed with the node's key (:class:`AuditHead`,
:func:`sign_head`), rewritten after every append.  :func:`verify_chain` checks
the chain against it and reports a cut-off tail ("the log ends at entry N but
the signed head says M").  What that does and does not stop:

- Someone who can write the database but not the node's key or the head file
  (a stolen or edited database, a restored old copy) cannot hide a cut: the
  head names an entry the log no longer has, or one it now holds with another
  hash.  A head row *inside* the database would not do: it would go with the
  rows it vouches for.  Nor can they write new entries or a new head: both
  need the key.
- Someone who can also write the data directory can delete the head file (the
  check then warns "no signed head yet", as for a node from before heads
  existed, until the next entry writes one) or put back an older head with the
  matching older log.  Against that, the head also travels in every manifest
  (``audit_seq``/``audit_head``): the copies peers hold cannot be rolled back.
- Someone with the key can rewrite everything; only the manifests peers hold
  still tell.

A head that lags behind the log (entries after it, chained to it) is only a
warning: the head is written after the commit, so a crash in between leaves it
behind, and entries beyond it still need the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from coop.governance.canonical import canonical_bytes, sha256_hex
from coop.governance.signing import Signer, verify

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditHead",
    "ChainReport",
    "append_entry",
    "entry_hash",
    "head_message",
    "sign_head",
    "verify_chain",
]

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


class AuditHead(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The latest entry's number and hash, signed by the node's key (kept outside the log)."""

    seq: int
    hash: str
    key: str  # the public key (hex) that signed
    signature: str


class ChainReport(msgspec.Struct, frozen=True):
    """Truthy when the whole chain checks; otherwise says where and why it breaks.

    ``first_bad`` names the first entry altered, removed or reordered (the first one
    cut off, for a cut tail); a ``problem`` without one is a head that does not check.
    ``warning`` is something to look at that is not a break (no signed head yet, a head
    behind the log).
    """

    checked: int
    first_bad: int | None = None
    problem: str | None = None
    key: str = ""  # the signing key (hex) in force after the last entry checked
    warning: str | None = None

    def __bool__(self) -> bool:
        return self.first_bad is None and self.problem is None


def entry_hash(*, seq: int, at: int, actor: str, action: str, payload: Any, prev: str) -> str:
    body = {"seq": seq, "at": at, "actor": actor, "action": action, "payload": payload, "prev": prev}
    return sha256_hex(canonical_bytes(body))


def append_entry(
    head: AuditEntry | None, *, at: int, actor: str, action: str, payload: Any, signer: Signer
) -> AuditEntry:
    """The entry that follows ``head`` (or starts the chain), hashed and signed."""
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    payload = msgspec.json.decode(canonical_bytes(payload))  # store exactly what was hashed
    digest = entry_hash(seq=seq, at=at, actor=actor, action=action, payload=payload, prev=prev)
    signature = signer.sign(bytes.fromhex(digest)).hex()
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


def head_message(seq: int, digest: str) -> bytes:
    """The bytes a head signature covers (typed, so they never read as anything else signed)."""
    return canonical_bytes({"type": "coop.audit-head/v1", "seq": seq, "hash": digest})


def sign_head(seq: int, digest: str, signer: Signer) -> AuditHead:
    """The signed head for the entry ``seq`` with hash ``digest``."""
    return AuditHead(
        seq=seq,
        hash=digest,
        key=signer.public_key.hex(),
        signature=signer.sign(head_message(seq, digest)).hex(),
    )


ROTATE: Final = "identity.rotate"


def verify_chain(
    entries: Iterable[AuditEntry],
    public_key: bytes,
    *,
    head: AuditHead | None = None,
    expect_head: bool = False,
    current_key: bytes | None = None,
) -> ChainReport:
    """Check sequence, links, hashes and signatures from the first entry on, then the head.

    ``public_key`` is the key the chain starts with (the node's first key, its node
    id).  A key rotation is itself an entry (``identity.rotate``, naming the old and
    the new key): from it on, entries must carry the new key's signature.  The
    report's ``key`` is the key in force at the end, for the caller to compare with
    the key the node signs with now.

    ``head`` is the signed head kept outside the log.  It must be signed by
    ``current_key`` (the key the node signs with now) or by the key in force at the
    entry it names (a head written just before a rotation), and that entry must be in
    the log with that hash.  With ``expect_head`` and no head, the report warns.
    """
    key = public_key
    expected_seq = 1
    prev = GENESIS
    checked = 0
    head_key: bytes | None = None  # the key in force at the entry the head names
    head_hash: str | None = None  # that entry's hash in the log
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
        if head is not None and entry.seq == head.seq:
            head_key, head_hash = key, entry.hash
        prev = entry.hash
        expected_seq += 1
        checked += 1
    if head is None:
        warning = (
            "no signed head yet: a cut-off tail cannot be detected until the next entry writes one"
            if expect_head and checked
            else None
        )
        return ChainReport(checked, key=key.hex(), warning=warning)
    return _check_head(head, checked=checked, key=key, head_key=head_key, head_hash=head_hash,
                       current_key=current_key)  # fmt: skip


def _check_head(
    head: AuditHead,
    *,
    checked: int,
    key: bytes,
    head_key: bytes | None,
    head_hash: str | None,
    current_key: bytes | None,
) -> ChainReport:
    try:
        signature = bytes.fromhex(head.signature)
    except ValueError:
        signature = b""
    message = head_message(head.seq, head.hash)
    signers = [k for k in (current_key, head_key) if k is not None]
    if not any(verify(k, message, signature) for k in signers):
        return ChainReport(
            checked,
            None,
            f"the signed head (entry {head.seq}) is not signed by this node's key: it was tampered with",
            key.hex(),
        )
    if head.seq > checked:
        cut = (
            f"entry {head.seq} was"
            if head.seq == checked + 1
            else f"entries {checked + 1} to {head.seq} were"
        )
        return ChainReport(
            checked,
            checked + 1,
            f"the log ends at entry {checked} but the signed head says {head.seq}: {cut} cut off",
            key.hex(),
        )
    if head_hash != head.hash:
        return ChainReport(
            checked,
            head.seq,
            f"entry {head.seq} is not the one the signed head names: the log was cut at or before it"
            " and written again",
            key.hex(),
        )
    if head.seq < checked:
        behind = checked - head.seq
        return ChainReport(
            checked,
            key=key.hex(),
            warning=f"the signed head is {behind} entr{'y' if behind == 1 else 'ies'} behind the log"
            f" (entry {head.seq} of {checked}); it is rewritten at the next entry",
        )
    return ChainReport(checked, key=key.hex())
