"""Release manifests: the signed, canonical summary of one node's published records.

Manifests form a hash chain per origin.  Each lists, per licence bucket, the
records added since the previous one (uid, hash of its canonical bytes,
licence, AI-use preference, eval consent, scope, tags, language) and the
tombstones since then, and states the count and Merkle root of each bucket's
*whole* set after them.  Folding the chain gives the full set, and a
one-record change costs one entry on the wire.  Each also carries the embargo
and quality-freeze state, the digest of the co-op's settings and the origin's
federation (the node ids it pinned: who its federation scope reaches), and the
licence buckets it gates (``gated``: only its grantees download them, so no peer
re-publishes them; ``mirror_gated``: its federation may still mirror them), and what the
joint actions binding it demand (``joint``: a peer that cannot verify those actions itself
still holds the origin's records in).  A
manifest lists only what a release cut of the origin admitted; ``node``-scope
records never appear, not even as hashes.

It travels in a DSSE envelope.  :func:`build_manifest` makes the payload
bytes and :func:`seal_manifest` signs them; :func:`check_manifest` verifies an
envelope against the keys a node trusts, *before* decoding the payload, and
checks everything a single manifest can show on its own.  What needs history
(the chain, rollback, equivocation) is :mod:`coop.federation.gossip`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from coop.federation.errors import ManifestError, Reason
from coop.federation.merkle import merkle_root
from coop.federation.roster import RosterRef
from coop.governance import (
    MAX_SAFE_INTEGER,
    Embargo,
    EvalConsent,
    GovernanceError,
    JointSelector,
    License,
    Scope,
    canonical_bytes,
    sha256_hex,
)
from coop.governance.envelope import open_envelope, refuse_repeated_payload_keys, seal, valid_signers
from coop.governance.signing import Signer

__all__ = [
    "DEFAULT_LIMITS",
    "GENESIS",
    "MANIFEST_TYPE",
    "PAYLOAD_TYPE",
    "BucketManifest",
    "BucketRoot",
    "Entry",
    "GovernanceState",
    "Limits",
    "Manifest",
    "ManifestJoint",
    "Tombstone",
    "Verified",
    "bucket_roots",
    "build_manifest",
    "check_manifest",
    "entry_bytes",
    "seal_manifest",
]

PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.manifest+json"
MANIFEST_TYPE: Final = "coop-flywheel/manifest/1"
GENESIS: Final = "0" * 64
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_ROSTER_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_BUCKET_NAMES: Final = frozenset(licence.bucket for licence in License)
_MAX_JOINT: Final = 1_000  # binding actions (and embargo selectors) a manifest may declare


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """One record a peer may know about (compact: an array on the wire).

    ``tags`` and ``language`` came later, as trailing defaulted fields (msgspec's
    array-like schema evolution): older arrays decode with the defaults, older
    readers ignore the extra elements.  A peer needs them to honour the origin's
    embargo by tag or language before it pulls the record.
    """

    uid: str
    hash: str
    license: License
    ai_use: str
    eval: EvalConsent
    scope: Scope
    tags: tuple[str, ...] = ()
    language: str | None = None


class BucketManifest(msgspec.Struct, frozen=True):
    """Entries of one licence bucket added (or replaced) since the previous manifest."""

    name: str
    license: License
    entries: tuple[Entry, ...]


class BucketRoot(msgspec.Struct, frozen=True, array_like=True):
    """The whole bucket after this manifest: how many entries and their Merkle root."""

    name: str
    count: int
    root: str


class Tombstone(msgspec.Struct, frozen=True, array_like=True):
    uid: str
    at: int


class GovernanceState(msgspec.Struct, frozen=True):
    settings_digest: str
    embargo: Embargo
    quality_freeze: bool
    audit_seq: int
    audit_head: str


class ManifestJoint(msgspec.Struct, frozen=True, kw_only=True):
    """What the joint actions binding the origin demand of its records' travel, as it declares
    them itself (its signature vouches for them): its freeze, the selectors of its joint
    embargoes, the earliest start of an evaluation-only action, and the ids of those actions.
    A peer honours them beside what it verifies itself (both only ever hold records in)."""

    freeze: bool = False
    embargoes: tuple[JointSelector, ...] = ()
    eval_only_since: int | None = None
    actions: tuple[str, ...] = ()  # sorted, distinct action ids (64 hex)

    def __bool__(self) -> bool:
        return self.freeze or bool(self.embargoes) or self.eval_only_since is not None


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """The payload.  New fields always get defaults (older peers keep reading it)."""

    type: str = MANIFEST_TYPE
    origin: str  # the node id: its first Ed25519 public key, hex
    key: str  # the key that signs this manifest (hex)
    coop: str
    seq: int
    prev: str  # sha256 of the previous manifest's payload bytes (GENESIS for seq 1)
    issued_at: int
    expires_at: int
    release: str | None = None
    buckets: tuple[BucketManifest, ...] = ()
    roots: tuple[BucketRoot, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()
    state: GovernanceState
    rotate_to: str | None = None  # a new key: valid only when signed by this key and the new one
    # The origin's federation when it issued this manifest: the node ids it pinned.  Its
    # federation-scope records go to these co-ops only.  None: a manifest from before the
    # field, naming no one (only the origin itself serves such records).
    federation: tuple[str, ...] | None = None
    # The roster whose members are the origin's federation, when one is in force (instead of
    # listing them).  Left out of the bytes when unset, so manifests without it read as before.
    roster: RosterRef | msgspec.UnsetType = msgspec.UNSET
    # The licence buckets the origin gates (only its grantees download them; no public exit
    # carries them), sorted; and whether its federation's co-ops may still mirror them.  Both
    # left out of the bytes when not set (no gated bucket; mirroring refused), so manifests
    # without them read, and hash, as before.
    gated: tuple[License, ...] | msgspec.UnsetType = msgspec.UNSET
    mirror_gated: bool | msgspec.UnsetType = msgspec.UNSET
    # What the joint actions binding the origin demand (a freeze, embargo selectors, an
    # evaluation-only start): left out of the bytes when none binds it, so manifests without
    # it read, and hash, as before.
    joint: ManifestJoint | msgspec.UnsetType = msgspec.UNSET

    def added(self) -> list[Entry]:
        return [entry for bucket in self.buckets for entry in bucket.entries]


class Limits(msgspec.Struct, frozen=True):
    max_bytes: int = 64 * 1024 * 1024
    max_entries: int = 1_000_000
    max_tombstones: int = 1_000_000
    max_lifetime: int = 90 * 86_400
    # Who a federation scope reaches: a co-op's pinned peers, a few dozen in practice.  Every
    # signed request reads the heads' lists, so a forged huge one would tax each of them.
    max_federation: int = 4_096


DEFAULT_LIMITS: Final = Limits()


class Verified(msgspec.Struct, frozen=True):
    """A manifest whose signature and content checked; ``envelope`` is kept as received."""

    manifest: Manifest
    hash: str
    envelope: bytes


_MANIFEST: Final = msgspec.json.Decoder(Manifest)
_ENCODE_ENTRY: Final = msgspec.json.Encoder(order="sorted")


def entry_bytes(entry: Entry) -> bytes:
    """The bytes a Merkle leaf hashes: without tags or language, exactly the six-field
    array of older manifests (msgspec writes defaulted trailing fields of an array-like
    struct, so they are left out here by hand), so old chains keep their roots."""
    fields: tuple[object, ...] = (entry.uid, entry.hash, entry.license, entry.ai_use, entry.eval, entry.scope)
    if entry.tags or entry.language is not None:
        fields += (entry.tags, entry.language)
    return _ENCODE_ENTRY.encode(fields)


def build_manifest(
    *,
    origin: str,
    key: str,
    coop: str,
    seq: int,
    prev: str,
    issued_at: int,
    lifetime: int,
    release: str | None,
    added: Sequence[Entry],
    complete: Mapping[str, Entry],
    tombstones: Sequence[Tombstone],
    state: GovernanceState,
    rotate_to: str | None = None,
    federation: Sequence[str] | None = None,
    roster: RosterRef | None = None,
    gated: Sequence[License] = (),
    mirror_gated: bool = False,
    joint: ManifestJoint | None = None,
) -> bytes:
    """The canonical payload bytes.

    ``added`` are the entries new (or replaced) since the previous manifest;
    ``complete`` is the whole set after this one (uid -> entry), for the roots;
    ``federation`` the node ids the origin pinned (who its federation scope reaches);
    ``gated`` the licences whose buckets the origin gates and ``mirror_gated`` whether its
    federation may mirror them (both written only when set); ``joint`` what the joint actions
    binding the origin demand (written only when they demand something).
    """
    by_licence: dict[License, list[Entry]] = {}
    for entry in added:
        if entry.scope is Scope.NODE:
            raise ValueError(f"node-scope record {entry.uid} cannot be in a manifest")
        by_licence.setdefault(entry.license, []).append(entry)
    buckets = [
        BucketManifest(
            name=licence.bucket,
            license=licence,
            entries=tuple(sorted(by_licence[licence], key=lambda e: e.uid)),
        )
        for licence in License
        if licence in by_licence
    ]
    manifest = Manifest(
        origin=origin,
        key=key,
        coop=coop,
        seq=seq,
        prev=prev,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        release=release,
        buckets=tuple(buckets),
        roots=bucket_roots(complete),
        tombstones=tuple(sorted(tombstones, key=lambda t: t.uid)),
        state=state,
        rotate_to=rotate_to,
        federation=None if federation is None else tuple(sorted(set(federation))),
        roster=msgspec.UNSET if roster is None else roster,
        gated=tuple(sorted(set(gated), key=lambda licence: licence.value)) or msgspec.UNSET,
        mirror_gated=True if mirror_gated and gated else msgspec.UNSET,  # with nothing gated: moot
        joint=_joint_field(joint),
    )
    return canonical_bytes(manifest)


def _joint_field(joint: ManifestJoint | None) -> ManifestJoint | msgspec.UnsetType:
    """The one way to write the joint demands: absent when none, else actions sorted and distinct."""
    if joint is None or not joint:
        return msgspec.UNSET
    return msgspec.structs.replace(joint, actions=tuple(sorted(set(joint.actions))))


def bucket_roots(complete: Mapping[str, Entry]) -> tuple[BucketRoot, ...]:
    """Count and Merkle root per licence bucket of a whole set (entries sorted by uid)."""
    by_licence: dict[License, list[Entry]] = {}
    for entry in complete.values():
        by_licence.setdefault(entry.license, []).append(entry)
    roots = []
    for licence in License:
        items = sorted(by_licence.get(licence, ()), key=lambda e: e.uid)
        if items:
            roots.append(
                BucketRoot(
                    name=licence.bucket, count=len(items), root=merkle_root([entry_bytes(e) for e in items])
                )
            )
    return tuple(roots)


def seal_manifest(payload: bytes, signers: Sequence[Signer]) -> bytes:
    """Sign the payload bytes (with both keys when rotating) into envelope bytes."""
    return seal(payload, PAYLOAD_TYPE, signers)


def check_manifest(data: bytes, *, trusted: Mapping[str, str], limits: Limits = DEFAULT_LIMITS) -> Verified:
    """Verify an envelope against trusted keys (key hex -> origin) and check its content.

    Raises :class:`ManifestError` with the reason; nothing here depends on
    what the node already holds, so it can run before any state is touched.
    """
    try:
        envelope, payload = open_envelope(
            data, payload_type=PAYLOAD_TYPE, max_bytes=limits.max_bytes, payload_keys=False
        )
        # The payload is decoded here, before the signatures, only so that the repeated-key
        # check open_envelope would run can use it (a re-encoding instead of a second parse:
        # the same answer, ~20 ms instead of ~180 ms at 100k entries); a payload that is not a
        # manifest is still refused after the signature checks, as before.
        try:
            manifest: Manifest | None = _MANIFEST.decode(payload)
            undecodable: Exception | None = None
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            UnicodeDecodeError,
            RecursionError,
            GovernanceError,
        ) as exc:
            manifest, undecodable = None, exc
        refuse_repeated_payload_keys(payload, manifest)
    except GovernanceError as exc:
        reason = Reason.TOO_LARGE if exc.field == "size" else Reason.MALFORMED
        raise ManifestError(reason, exc.message) from None
    claimed = {s.keyid for s in envelope.signatures}
    known = {k: bytes.fromhex(k) for k in claimed if k in trusted and _HEX64.match(k)}
    if not known:
        raise ManifestError(Reason.UNKNOWN_KEY, "signed by no key this node trusts")
    good = valid_signers(envelope, payload, known)
    if not good:
        raise ManifestError(Reason.BAD_SIGNATURE, "no valid signature over the payload bytes")
    if manifest is None:
        raise ManifestError(Reason.MALFORMED, f"payload is not a manifest: {undecodable}") from None
    # A repeated key (signed bytes two parsers would read differently) was refused already, above.
    if manifest.type != MANIFEST_TYPE:
        raise ManifestError(Reason.MALFORMED, f"unknown manifest type {manifest.type!r}")
    if manifest.key not in good:
        raise ManifestError(Reason.BAD_SIGNATURE, "not signed by the key the manifest names")
    if trusted.get(manifest.key) != manifest.origin:
        raise ManifestError(Reason.ORIGIN_MISMATCH, "the signing key does not belong to this origin")
    if manifest.rotate_to is not None and manifest.rotate_to not in valid_signers(
        envelope, payload, {manifest.rotate_to: _key_bytes(manifest.rotate_to)}
    ):
        raise ManifestError(Reason.ROTATION_UNSIGNED, "a key rotation must be signed by the new key too")
    _check_content(manifest, limits)
    return Verified(manifest=manifest, hash=sha256_hex(payload), envelope=data)


def _key_bytes(text: str) -> bytes:
    if not _HEX64.match(text):
        raise ManifestError(Reason.MALFORMED, "rotate_to is not a hex Ed25519 key")
    return bytes.fromhex(text)


_HEX64_LINES: Final = re.compile(r"(?:[0-9a-f]{64}\n)*")


def _bucket_entries_valid(bucket: BucketManifest) -> bool:
    """What the entry walk of :func:`_check_content` checks, over whole columns: every entry
    in the bucket's licence, none of node scope, uids strictly ascending, hashes 64 hex digits."""
    entries = bucket.entries
    uids = [e.uid for e in entries]
    hashes = "".join([e.hash + "\n" for e in entries])  # 65 characters each: one hash a line
    return (
        {e.license for e in entries} <= {bucket.license}
        and Scope.NODE not in {e.scope for e in entries}
        and (not uids or uids[0] > "")
        and sorted(set(uids)) == uids
        and len(hashes) == 65 * len(entries)
        and _HEX64_LINES.fullmatch(hashes) is not None
    )


def _check_content(manifest: Manifest, limits: Limits) -> None:
    if not 1 <= manifest.seq <= MAX_SAFE_INTEGER - 1:
        raise ManifestError(Reason.SEQ_OUT_OF_RANGE, f"sequence {manifest.seq} is out of range")
    if not _HEX64.match(manifest.prev) or not _HEX64.match(manifest.origin):
        raise ManifestError(Reason.MALFORMED, "origin and prev must be 64 lowercase hex digits")
    if manifest.seq == 1 and manifest.prev != GENESIS:
        raise ManifestError(Reason.MALFORMED, "the first manifest must start the chain")
    lifetime = manifest.expires_at - manifest.issued_at
    if not 0 < lifetime <= limits.max_lifetime:
        raise ManifestError(Reason.MALFORMED, f"lifetime {lifetime} s is out of range")
    total = sum(len(b.entries) for b in manifest.buckets)
    if (
        total > limits.max_entries
        or len(manifest.tombstones) > limits.max_tombstones
        or sum(r.count for r in manifest.roots) > limits.max_entries
    ):
        raise ManifestError(Reason.TOO_LARGE, "too many entries or tombstones")
    names = [b.name for b in manifest.buckets]
    if len(set(names)) != len(names):
        raise ManifestError(Reason.MALFORMED, "a bucket is listed twice")
    for bucket in manifest.buckets:
        if bucket.name != bucket.license.bucket:
            raise ManifestError(Reason.MALFORMED, f"bucket {bucket.name} does not match its licence")
        if _bucket_entries_valid(bucket):
            continue  # the walk below, at C speed; it runs only to name what is wrong
        previous = ""
        for entry in bucket.entries:
            if entry.license is not bucket.license:
                raise ManifestError(Reason.MALFORMED, f"{entry.uid} is in the wrong licence bucket")
            if entry.scope is Scope.NODE:
                raise ManifestError(Reason.MALFORMED, f"{entry.uid} has node scope and must not be listed")
            if entry.uid <= previous:
                raise ManifestError(Reason.MALFORMED, f"bucket {bucket.name} is not sorted by uid")
            if not _HEX64.match(entry.hash):
                raise ManifestError(Reason.MALFORMED, f"{entry.uid} has no valid hash")
            previous = entry.uid
    if manifest.federation is not None and (
        len(manifest.federation) > limits.max_federation
        or any(not _HEX64.match(node) for node in manifest.federation)
        or list(manifest.federation) != sorted(set(manifest.federation))
    ):
        raise ManifestError(Reason.MALFORMED, "federation must list sorted, distinct node ids")
    if not isinstance(manifest.roster, msgspec.UnsetType) and (
        not _ROSTER_ID.match(manifest.roster.federation)
        or not 1 <= manifest.roster.version <= MAX_SAFE_INTEGER
    ):
        raise ManifestError(Reason.MALFORMED, "the roster named is malformed")
    # One way to write each: absent when empty (or false), else sorted and distinct.
    if not isinstance(manifest.gated, msgspec.UnsetType) and (
        not manifest.gated or [g.value for g in manifest.gated] != sorted({g.value for g in manifest.gated})
    ):
        raise ManifestError(Reason.MALFORMED, "gated must list sorted, distinct licences (or be left out)")
    if manifest.mirror_gated is False or (
        manifest.mirror_gated is True and isinstance(manifest.gated, msgspec.UnsetType)
    ):
        raise ManifestError(Reason.MALFORMED, "mirror_gated is written only when true, with gated buckets")
    if not isinstance(manifest.joint, msgspec.UnsetType):
        _check_joint(manifest.joint)
    for root in manifest.roots:
        if root.name not in _BUCKET_NAMES or not _HEX64.match(root.root) or root.count < 1:
            raise ManifestError(Reason.MALFORMED, f"root of bucket {root.name!r} is malformed")


def _check_joint(joint: ManifestJoint) -> None:
    """Written only when it demands something; bounded; actions sorted, distinct, 64 hex."""
    if not joint:
        raise ManifestError(Reason.MALFORMED, "joint is written only when a joint action demands something")
    if len(joint.embargoes) > _MAX_JOINT or len(joint.actions) > _MAX_JOINT:
        raise ManifestError(Reason.TOO_LARGE, f"joint names more than {_MAX_JOINT} actions or selectors")
    if not joint.actions or list(joint.actions) != sorted(set(joint.actions)):
        raise ManifestError(Reason.MALFORMED, "joint must list the binding actions, sorted and distinct")
    if any(not _HEX64.match(action) for action in joint.actions):
        raise ManifestError(Reason.MALFORMED, "joint action ids are 64 lowercase hex digits")
    since = joint.eval_only_since
    if since is not None and not 0 <= since <= MAX_SAFE_INTEGER:
        raise ManifestError(Reason.MALFORMED, "joint eval_only_since is out of range")
