"""Errors raised by the federation package.

The tree::

    FederationError
    ├── ManifestError       a manifest that must not be stored or forwarded (bad data or policy)
    ├── RosterError         a roster version or proposal that must not be trusted (``reason``)
    ├── JointError          a joint action or statement that must not be stored (``field``)
    ├── RequestAuthError        a peer request whose signature, digest or freshness fails (401)
    │   └── ClockSkewError         its time is outside the window: ``offset`` (created - now, s)
    └── PeerError              a peer that cannot be used right now
        ├── PeerUnreachableError       connection refused, reset, DNS...
        ├── PeerTimeoutError           the deadline passed (a slow-drip peer)
        └── ResponseTooLargeError  the response went over its byte cap
"""

from __future__ import annotations

import enum

__all__ = [
    "ClockSkewError",
    "FederationError",
    "JointError",
    "ManifestError",
    "PeerError",
    "PeerTimeoutError",
    "PeerUnreachableError",
    "Reason",
    "RequestAuthError",
    "ResponseTooLargeError",
    "RosterError",
    "RosterReason",
]


class Reason(enum.StrEnum):
    """Why a manifest was refused."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    ROTATION_UNSIGNED = "rotation_not_signed_by_both_keys"
    ORIGIN_MISMATCH = "origin_mismatch"
    SEQ_OUT_OF_RANGE = "seq_out_of_range"
    EXPIRED = "expired"
    ROLLBACK = "rollback"
    GAP = "gap"
    BAD_MERKLE_ROOT = "bad_merkle_root"


class FederationError(Exception):
    """Root of every error raised by :mod:`coop.federation`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManifestError(FederationError):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RequestAuthError(FederationError):
    """A peer request that fails authentication; answered with 401.

    ``signer`` is the key id whose signature over the request verified, when the refusal came
    after that (its time, body digest or nonce failed); None when it did not verify, so a key id
    the request merely claimed is never taken for its author.
    """

    def __init__(self, message: str, *, signer: str | None = None) -> None:
        super().__init__(message)
        self.signer = signer


class ClockSkewError(RequestAuthError):
    """A signature created too far in this node's future or expired too long ago.

    ``offset`` is the signature's ``created`` minus this node's clock, in seconds: about
    how far the signer's clock runs ahead (positive) or behind (negative).  Raised only once
    the signature verified (``signer`` is set).
    """

    def __init__(self, message: str, *, offset: int, signer: str | None = None) -> None:
        super().__init__(message, signer=signer)
        self.offset = offset


class PeerError(FederationError):
    """A peer that could not be used (the sync switches to another)."""


class PeerUnreachableError(PeerError):
    pass


class PeerTimeoutError(PeerError):
    pass


class ResponseTooLargeError(PeerError):
    pass


class RosterReason(enum.StrEnum):
    """Why a roster version (or proposal) is not trusted."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    WRONG_FEDERATION = "wrong_federation"
    ROLLBACK = "rollback"
    GAP = "gap"
    BROKEN_CHAIN = "broken_chain"
    UNDER_SIGNED_OLD = "under_signed_by_trusted_members"
    UNDER_SIGNED_NEW = "under_signed_by_own_members"
    UNPROVEN_KEY = "added_key_did_not_sign"
    BAD_THRESHOLD = "bad_threshold"
    NO_ROSTER = "no_roster"


class RosterError(FederationError):
    """A roster version or proposal that must not be trusted, and why."""

    def __init__(self, reason: RosterReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class JointError(FederationError):
    """A joint action or statement refused: forged, malformed, expired, over a limit.

    ``field`` names the part at fault (``signature``, ``proposer``, ``ends_at``...), as
    :class:`coop.governance.InvalidValueError` does, so that a problem document can say it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
