"""Evaluation requests: what a model builder asks of the federation, signed by the builder.

A request names the task (an evaluator), the model artifact by name, size and
SHA-256, filters over the records, the co-ops it targets (by node id), the
requester's Ed25519 public key and a purpose line people will read.  It
travels in a DSSE envelope signed by that key; every node verifies the bytes
before it decodes them, and checks the artifact it receives against the hash.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from coop.governance import GovernanceError, Label, Record, canonical_bytes, sha256_hex
from coop.governance.envelope import open_envelope, seal, valid_signers
from coop.governance.signing import Signer

__all__ = [
    "REQUEST_TYPE",
    "EvalRequest",
    "Filters",
    "RequestProblem",
    "RequestRefusedError",
    "VerifiedRequest",
    "build_request",
    "open_request",
]

REQUEST_TYPE: Final = "application/vnd.coop-flywheel.eval-request+json"
_KIND: Final = "coop-flywheel/eval-request/1"
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
MAX_REQUEST_BYTES: Final = 64 * 1024


class Filters(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which records count: by label, tag, language and creation time (all optional)."""

    labels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None

    def matches(self, record: Record) -> bool:
        if self.labels and record.label.value not in self.labels:
            return False
        if self.tags and not set(self.tags) & set(record.tags):
            return False
        if self.languages and record.language not in self.languages:
            return False
        if self.since is not None and record.created_at < self.since:
            return False
        return self.until is None or record.created_at <= self.until


class EvalRequest(msgspec.Struct, frozen=True, kw_only=True):
    type: str = _KIND
    task: str
    model_name: str
    model_sha256: str
    model_bytes: int
    filters: Filters = Filters()
    targets: tuple[str, ...]
    requester: str
    purpose: str
    created_at: int
    expires_at: int
    nonce: str


class RequestProblem(enum.StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    MODEL_HASH_MISMATCH = "model_hash_mismatch"


class RequestRefusedError(GovernanceError):
    """A request no node should act on; ``problem`` says why."""

    def __init__(self, problem: RequestProblem, message: str) -> None:
        super().__init__(message, field="request")
        self.problem = problem


class VerifiedRequest(msgspec.Struct, frozen=True):
    request: EvalRequest
    hash: str  # sha256 of the payload bytes: what attestations and reports name
    envelope: bytes


_DECODER: Final = msgspec.json.Decoder(EvalRequest)


def build_request(
    *,
    signer: Signer,
    task: str,
    model_name: str,
    artifact: bytes,
    targets: Sequence[str],
    purpose: str,
    filters: Filters,
    now: int,
    lifetime: int,
    nonce: str,
) -> bytes:
    """The signed request envelope (the requester's key signs it)."""
    for label in filters.labels:
        Label(label)  # refuse a label that does not exist, with ValueError
    request = EvalRequest(
        task=task,
        model_name=model_name,
        model_sha256=hashlib.sha256(artifact).hexdigest(),
        model_bytes=len(artifact),
        filters=filters,
        targets=tuple(sorted(set(targets))),
        requester=signer.public_key.hex(),
        purpose=purpose.strip(),
        created_at=now,
        expires_at=now + lifetime,
        nonce=nonce,
    )
    return seal(canonical_bytes(request), REQUEST_TYPE, [signer])


def open_request(data: bytes, *, now: int, artifact: bytes | None = None) -> VerifiedRequest:
    """Verify the requester's signature over the exact bytes, then the content; raise RequestRefusedError."""
    try:
        envelope, payload = open_envelope(data, payload_type=REQUEST_TYPE, max_bytes=MAX_REQUEST_BYTES)
    except GovernanceError as exc:
        raise RequestRefusedError(RequestProblem.MALFORMED, exc.message) from None
    claimed = [s.keyid for s in envelope.signatures if _HEX64.match(s.keyid)]
    good = valid_signers(envelope, payload, {k: bytes.fromhex(k) for k in claimed})
    if not good:
        raise RequestRefusedError(RequestProblem.BAD_SIGNATURE, "the request's signature does not verify")
    try:
        request = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestRefusedError(RequestProblem.MALFORMED, f"not an evaluation request: {exc}") from None
    if request.type != _KIND or not _HEX64.match(request.model_sha256):
        raise RequestRefusedError(RequestProblem.MALFORMED, "not an evaluation request this node understands")
    if request.requester not in good:
        raise RequestRefusedError(RequestProblem.BAD_SIGNATURE, "not signed by the requester it names")
    if not request.created_at <= now + 300 or now >= request.expires_at:
        raise RequestRefusedError(
            RequestProblem.EXPIRED, "the request is not valid now (expired or from the future)"
        )
    if not request.targets or any(not _HEX64.match(t) for t in request.targets):
        raise RequestRefusedError(
            RequestProblem.MALFORMED, "a request names the co-ops it targets by node id"
        )
    if artifact is not None and (
        len(artifact) != request.model_bytes or hashlib.sha256(artifact).hexdigest() != request.model_sha256
    ):
        raise RequestRefusedError(
            RequestProblem.MODEL_HASH_MISMATCH, "the model file does not match the signed hash"
        )
    return VerifiedRequest(request=request, hash=sha256_hex(payload), envelope=data)
