"""The federation roster: who the member co-ops are, changed only by k-of-n of them.

A roster version lists the federation (id, name), its ``version`` (1, 2, ...), when it expires,
the threshold ``k`` and the members (node id = the co-op's original key, its current key, name,
URL), and ``prev``, the hash of the previous version's payload.  It is canonical JSON in a DSSE
envelope carrying several signatures.  Trust follows TUF's root rotation rules:

* a first roster is trusted out of band (``coop federation join``: trust on first use) when at
  least ``k`` of its own members signed it (:func:`trust_root`);
* version N+1 is trusted only after version N, when signed by at least ``k_N`` distinct keys of
  version N's members *and* ``k_{N+1}`` of its own, and by every key it adds (a newly admitted
  co-op's key, a rotated key: proof of possession) -- :func:`check_update` says what is missing,
  :func:`verify_update` raises;
* a version at or below the trusted one is a rollback, one beyond N+1 a gap (apply the chain in
  order: :func:`apply_chain`); a trusted roster past ``expires_at`` is *frozen* (reported: nobody
  re-signed it in time, or someone keeps the newer one from us).

A **proposal** is the unsigned next version plus the signatures gathered so far: an envelope
that does not verify yet.  Signatures of one proposal merge (:func:`merge_signatures`); once it
verifies, it is the next version.  Everything here is pure: callers pass ``now``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import msgspec

from coop.federation.errors import RosterError, RosterReason
from coop.governance import MAX_SAFE_INTEGER, GovernanceError, canonical_bytes, sha256_hex
from coop.governance.envelope import Envelope, EnvelopeSignature, open_envelope, seal, valid_signers
from coop.governance.signing import Signer

__all__ = [
    "GENESIS",
    "MAX_MEMBERS",
    "MAX_ROSTER_BYTES",
    "ROSTER_PAYLOAD_TYPE",
    "ROSTER_TYPE",
    "Admit",
    "Change",
    "Extend",
    "Member",
    "Opened",
    "Remove",
    "Roster",
    "RosterRef",
    "Rotate",
    "SetThreshold",
    "Trusted",
    "Update",
    "Verdict",
    "add_signature",
    "apply_chain",
    "check_update",
    "create_roster",
    "frozen",
    "merge_signatures",
    "next_version",
    "open_roster",
    "roster_bytes",
    "sign_envelope",
    "signers_of",
    "trust_root",
    "verify_update",
]

ROSTER_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.roster+json"
ROSTER_TYPE: Final = "coop-flywheel/roster/1"
GENESIS: Final = "0" * 64
MAX_MEMBERS: Final = 4_096
MAX_ROSTER_BYTES: Final = 4 * 1024 * 1024
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_FEDERATION_ID: Final = re.compile(r"^[0-9a-f]{32}$")


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One member co-op: ``id`` is its original key (its node id), ``key`` the one it signs with now."""

    id: str
    key: str
    name: str
    url: str


class Roster(msgspec.Struct, frozen=True, kw_only=True):
    """One roster version (the payload).  New fields always get defaults."""

    type: str = ROSTER_TYPE
    federation: str  # 32 hex digits, chosen when the federation was created
    name: str
    version: int
    expires_at: int
    threshold: int
    members: tuple[Member, ...]  # sorted by id
    prev: str  # sha256 of the previous version's payload (GENESIS for version 1)

    def keys(self) -> dict[str, str]:
        """Each member's current key -> its node id."""
        return {member.key: member.id for member in self.members}

    def ids(self) -> dict[str, str]:
        """Each member's node id -> its current key."""
        return {member.id: member.key for member in self.members}


class RosterRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a manifest says of its federation scope when a roster is in force: that roster."""

    federation: str
    version: int


class Admit(msgspec.Struct, frozen=True, tag="admit"):
    member: Member


class Remove(msgspec.Struct, frozen=True, tag="remove"):
    id: str


class Rotate(msgspec.Struct, frozen=True, tag="rotate"):
    id: str
    key: str


class SetThreshold(msgspec.Struct, frozen=True, tag="threshold"):
    threshold: int


class Update(msgspec.Struct, frozen=True, tag="update"):
    """A member's new name and/or URL (None: unchanged)."""

    id: str
    name: str | None = None
    url: str | None = None


class Extend(msgspec.Struct, frozen=True, tag="extend"):
    expires_at: int


Change = Admit | Remove | Rotate | SetThreshold | Update | Extend


class Opened(msgspec.Struct, frozen=True):
    """A decoded roster envelope whose content checked (its signatures not yet counted)."""

    roster: Roster
    hash: str  # sha256 of the payload: the version's (or proposal's) id
    envelope: Envelope
    payload: bytes
    data: bytes  # the envelope bytes as received


class Trusted(msgspec.Struct, frozen=True):
    """A roster version this node trusts, with its envelope bytes as received."""

    roster: Roster
    hash: str
    envelope: bytes


class Verdict(msgspec.Struct, frozen=True):
    """What :func:`check_update` found: truthy when the version may be trusted.

    ``old_missing``/``new_missing``: signatures still needed from the trusted version's members
    and from the candidate's own; ``unproven``: added or rotated keys that have not signed.
    """

    reason: RosterReason | None
    detail: str = ""
    old_missing: int = 0
    new_missing: int = 0
    unproven: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.reason is None


_DECODER: Final = msgspec.json.Decoder(Roster)


def roster_bytes(roster: Roster) -> bytes:
    """The canonical payload bytes of a roster version (its content checked first)."""
    _check_content(roster)
    return canonical_bytes(roster)


def sign_envelope(payload: bytes, signers: Sequence[Signer]) -> bytes:
    """A roster (or proposal) envelope signed by each signer given; the payload must be a roster
    in its canonical form (:func:`roster_bytes`), which is what is signed."""
    try:
        roster = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RosterError(RosterReason.MALFORMED, f"payload is not a roster: {exc}") from None
    if canonical_bytes(roster) != payload:
        raise RosterError(RosterReason.MALFORMED, "the payload is not the roster's canonical JSON (RFC 8785)")
    return seal(canonical_bytes(roster), ROSTER_PAYLOAD_TYPE, signers)


def create_roster(
    *, federation: str, name: str, founder: Member, threshold: int, expires_at: int, signer: Signer
) -> Trusted:
    """Version 1: the founding co-op alone, signed by it."""
    roster = Roster(
        federation=federation,
        name=name,
        version=1,
        expires_at=expires_at,
        threshold=threshold,
        members=(founder,),
        prev=GENESIS,
    )
    payload = roster_bytes(roster)
    return Trusted(roster=roster, hash=sha256_hex(payload), envelope=sign_envelope(payload, [signer]))


def next_version(current: Trusted, changes: Iterable[Change], *, expires_at: int | None = None) -> Roster:
    """The unsigned next version: ``current`` with ``changes`` applied (raises on a bad change)."""
    members = {member.id: member for member in current.roster.members}
    roster = current.roster
    threshold, expiry = roster.threshold, roster.expires_at if expires_at is None else expires_at
    for change in changes:
        if isinstance(change, Admit):
            if change.member.id in members:
                raise RosterError(RosterReason.MALFORMED, f"{change.member.id[:16]} is already a member")
            members[change.member.id] = change.member
        elif isinstance(change, Remove):
            if members.pop(change.id, None) is None:
                raise RosterError(RosterReason.MALFORMED, f"{change.id[:16]} is not a member")
        elif isinstance(change, Rotate | Update):
            old = members.get(change.id)
            if old is None:
                raise RosterError(RosterReason.MALFORMED, f"{change.id[:16]} is not a member")
            if isinstance(change, Rotate):
                members[change.id] = msgspec.structs.replace(old, key=change.key)
            else:
                members[change.id] = msgspec.structs.replace(
                    old,
                    name=old.name if change.name is None else change.name,
                    url=old.url if change.url is None else change.url,
                )
        elif isinstance(change, SetThreshold):
            threshold = change.threshold
        else:
            expiry = change.expires_at
    candidate = Roster(
        federation=roster.federation,
        name=roster.name,
        version=roster.version + 1,
        expires_at=expiry,
        threshold=threshold,
        members=tuple(sorted(members.values(), key=lambda m: m.id)),
        prev=current.hash,
    )
    _check_content(candidate)
    return candidate


def open_roster(data: bytes) -> Opened:
    """Parse a roster envelope and check its content (nothing about who signed it yet)."""
    try:
        envelope, payload = open_envelope(data, payload_type=ROSTER_PAYLOAD_TYPE, max_bytes=MAX_ROSTER_BYTES)
    except GovernanceError as exc:
        reason = RosterReason.TOO_LARGE if exc.field == "size" else RosterReason.MALFORMED
        raise RosterError(reason, exc.message) from None
    try:
        roster = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise RosterError(RosterReason.MALFORMED, f"payload is not a roster: {exc}") from None
    _check_content(roster)
    if canonical_bytes(roster) != payload:
        # One content, one hash: a re-encoding of a version would pass for another version.
        raise RosterError(RosterReason.MALFORMED, "the payload is not the roster's canonical JSON (RFC 8785)")
    return Opened(roster=roster, hash=sha256_hex(payload), envelope=envelope, payload=payload, data=data)


def _signed_by(opened: Opened, keys: Iterable[str]) -> set[str]:
    """The keys among ``keys`` with a valid signature over the payload (each key once: only the
    first signature of a key id is verified, and only of the keys wanted)."""
    wanted = {key: bytes.fromhex(key) for key in keys if _HEX64.match(key)}
    seen: dict[str, EnvelopeSignature] = {}
    for signature in opened.envelope.signatures:
        if signature.keyid in wanted and signature.keyid not in seen:
            seen[signature.keyid] = signature
    once = Envelope(payload_type=opened.envelope.payload_type, payload="", signatures=tuple(seen.values()))
    return valid_signers(once, opened.payload, wanted)


def trust_root(data: bytes, *, now: int) -> tuple[Trusted, bool]:
    """A roster obtained out of band, trusted on first use: signed by ``k`` of its own members.

    Returns it and whether it is frozen (expired) already.
    """
    opened = open_roster(data)
    roster = opened.roster
    good = _signed_by(opened, roster.keys())
    if len(good) < roster.threshold:
        raise RosterError(
            RosterReason.UNDER_SIGNED_NEW,
            f"signed by {len(good)} of its members; its threshold is {roster.threshold}",
        )
    return Trusted(roster=roster, hash=opened.hash, envelope=data), frozen(roster, now=now)


def check_update(trusted: Trusted, data: bytes | Opened) -> Verdict:
    """Whether a candidate may follow ``trusted`` (TUF root rotation), and what it lacks."""
    try:
        opened = data if isinstance(data, Opened) else open_roster(data)
    except RosterError as exc:
        return Verdict(exc.reason, exc.message)
    old, new = trusted.roster, opened.roster
    if new.federation != old.federation:
        return Verdict(RosterReason.WRONG_FEDERATION, "a roster of another federation")
    if new.version <= old.version:
        return Verdict(RosterReason.ROLLBACK, f"version {new.version} is not after {old.version}")
    if new.version > old.version + 1:
        return Verdict(RosterReason.GAP, f"version {new.version} does not follow {old.version}")
    if new.prev != trusted.hash:
        return Verdict(RosterReason.BROKEN_CHAIN, "it does not name the trusted version as its previous one")
    old_good = _signed_by(opened, old.keys())
    new_good = _signed_by(opened, new.keys())
    added = sorted(set(new.keys()) - set(old.keys()))
    unproven = tuple(key for key in added if key not in new_good)
    old_missing = max(0, old.threshold - len(old_good))
    new_missing = max(0, new.threshold - len(new_good))
    if old_missing:
        return Verdict(
            RosterReason.UNDER_SIGNED_OLD,
            f"{old_missing} more signature(s) of version {old.version}'s members needed",
            old_missing,
            new_missing,
            unproven,
        )
    if new_missing:
        return Verdict(
            RosterReason.UNDER_SIGNED_NEW,
            f"{new_missing} more signature(s) of version {new.version}'s members needed",
            old_missing,
            new_missing,
            unproven,
        )
    if unproven:
        return Verdict(
            RosterReason.UNPROVEN_KEY,
            f"{len(unproven)} added or rotated key(s) have not signed",
            unproven=unproven,
        )
    return Verdict(None)


def verify_update(trusted: Trusted, data: bytes) -> Trusted:
    """The next trusted version, or :class:`RosterError` saying why not."""
    opened = open_roster(data)
    verdict = check_update(trusted, opened)
    if verdict.reason is not None:
        raise RosterError(verdict.reason, verdict.detail)
    return Trusted(roster=opened.roster, hash=opened.hash, envelope=data)


def apply_chain(
    trusted: Trusted, candidates: Iterable[bytes], *, now: int
) -> tuple[Trusted, list[Trusted], list[RosterError], bool]:
    """Apply versions in order from ``trusted``: (newest trusted, those applied, refusals, frozen).

    Versions at or below the trusted one are refused as rollbacks; a gap stops the chain where
    it is.  Frozen: the newest trusted version has expired at ``now`` (TUF checks expiry only on
    the final version: older links may have expired since).
    """
    opened: list[Opened] = []
    refused: list[RosterError] = []
    for data in dict.fromkeys(candidates):
        try:
            opened.append(open_roster(data))
        except RosterError as exc:
            refused.append(exc)
    applied: list[Trusted] = []
    for item in sorted(opened, key=lambda o: o.roster.version):
        verdict = check_update(trusted, item)
        if verdict.reason is not None:
            refused.append(RosterError(verdict.reason, verdict.detail))
            continue
        trusted = Trusted(roster=item.roster, hash=item.hash, envelope=item.data)
        applied.append(trusted)
    return trusted, applied, refused, frozen(trusted.roster, now=now)


def frozen(roster: Roster, *, now: int) -> bool:
    """Whether this version has expired (a freeze, when it is the newest one trusted)."""
    return now >= roster.expires_at


def merge_signatures(first: bytes, second: bytes) -> bytes:
    """One proposal's envelope with the signatures of both copies (one per key id).

    Both must carry the same payload; a key id's signature that verifies is kept over one that
    does not (a forged copy cannot push out a good signature).
    """
    a, b = open_roster(first), open_roster(second)
    if a.hash != b.hash:
        raise RosterError(RosterReason.MALFORMED, "two different proposals cannot be merged")
    chosen: dict[str, EnvelopeSignature] = {}
    for signature in (*a.envelope.signatures, *b.envelope.signatures):
        if signature.keyid in chosen or not _HEX64.match(signature.keyid):
            continue
        if valid_signers(
            Envelope(payload_type=ROSTER_PAYLOAD_TYPE, payload="", signatures=(signature,)),
            a.payload,
            {signature.keyid: bytes.fromhex(signature.keyid)},
        ):
            chosen[signature.keyid] = signature
    merged = Envelope(
        payload_type=ROSTER_PAYLOAD_TYPE,
        payload=a.envelope.payload,
        signatures=tuple(chosen[k] for k in sorted(chosen)),
    )
    return _ENVELOPE.encode(merged)


_ENVELOPE: Final = msgspec.json.Encoder(order="sorted")


def add_signature(data: bytes, signer: Signer) -> bytes:
    """The proposal envelope with ``signer``'s signature added (kept once per key)."""
    opened = open_roster(data)
    return merge_signatures(data, sign_envelope(opened.payload, [signer]))


def signers_of(opened: Opened, keys: Mapping[str, str]) -> set[str]:
    """The keys of ``keys`` (key -> node id) that validly signed."""
    return _signed_by(opened, keys)


def _printable(text: str) -> bool:
    """No control or format characters (a name is shown on terminals and pages, one line)."""
    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def _check_content(roster: Roster) -> None:
    if roster.type != ROSTER_TYPE:
        raise RosterError(RosterReason.MALFORMED, f"unknown roster type {roster.type!r}")
    if not _FEDERATION_ID.match(roster.federation):
        raise RosterError(RosterReason.MALFORMED, "a federation id is 32 lowercase hex digits")
    if not 1 <= roster.version <= MAX_SAFE_INTEGER - 1:
        raise RosterError(RosterReason.MALFORMED, f"version {roster.version} is out of range")
    if not _HEX64.match(roster.prev) or (roster.version == 1) != (roster.prev == GENESIS):
        raise RosterError(RosterReason.MALFORMED, "prev must be GENESIS for version 1 only")
    if not 0 < roster.expires_at <= MAX_SAFE_INTEGER:
        raise RosterError(RosterReason.MALFORMED, f"expiry {roster.expires_at} is out of range")
    if not 0 < len(roster.name) <= 200 or not _printable(roster.name):
        raise RosterError(
            RosterReason.MALFORMED,
            "the federation's name is 1 to 200 printable characters (no control characters)",
        )
    if not 0 < len(roster.members) <= MAX_MEMBERS:
        raise RosterError(RosterReason.TOO_LARGE, f"a roster lists 1 to {MAX_MEMBERS} members")
    if not 1 <= roster.threshold <= len(roster.members):
        raise RosterError(
            RosterReason.BAD_THRESHOLD,
            f"threshold {roster.threshold} is not between 1 and {len(roster.members)} members",
        )
    ids = [member.id for member in roster.members]
    if ids != sorted(set(ids)):
        raise RosterError(RosterReason.MALFORMED, "members must be sorted by id, each once")
    keys = [member.key for member in roster.members]
    if len(set(keys)) != len(keys):
        raise RosterError(RosterReason.MALFORMED, "two members share a key")
    known = set(ids)
    if any(key != member.id and key in known for key, member in zip(keys, roster.members, strict=True)):
        # A key that is another member's id would make "who signed" ambiguous.
        raise RosterError(RosterReason.MALFORMED, "a member's key is another member's id")
    for member in roster.members:
        if not _HEX64.match(member.id) or not _HEX64.match(member.key):
            raise RosterError(RosterReason.MALFORMED, "member ids and keys are 64 lowercase hex digits")
        if not 0 < len(member.name) <= 200 or not _printable(member.name):
            raise RosterError(
                RosterReason.MALFORMED,
                f"member {member.id[:16]}: a name is 1 to 200 printable characters (no control characters)",
            )
        if not member.url.startswith(("http://", "https://")) or any(
            ch.isspace() or not ch.isprintable() for ch in member.url
        ):
            raise RosterError(
                RosterReason.MALFORMED,
                f"member {member.id[:16]}: a URL is http(s)://, without spaces or control characters",
            )
        if len(member.url) > 500:
            raise RosterError(RosterReason.MALFORMED, f"member {member.id[:16]}: URL too long")
