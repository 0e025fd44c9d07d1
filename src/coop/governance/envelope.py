"""DSSE envelopes: signed payloads that travel and are stored exactly as signed.

An envelope is ``{"payloadType", "payload" (base64), "signatures": [{"keyid", "sig"}]}``;
each signature covers the DSSE pre-authentication encoding (PAE) of the payload
type and the payload bytes, so the bytes are verified *before* anything
decodes them.  Key ids are the hex Ed25519 public keys.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from coop.governance.canonical import duplicate_key_of
from coop.governance.errors import InvalidValueError
from coop.governance.nesting import NESTED_TOO_DEEP, json_too_deep
from coop.governance.signing import Signer, verify

__all__ = [
    "Envelope",
    "EnvelopeSignature",
    "open_envelope",
    "pae",
    "refuse_repeated_payload_keys",
    "seal",
    "valid_signers",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")


class EnvelopeSignature(msgspec.Struct, frozen=True):
    keyid: str
    sig: str


class Envelope(msgspec.Struct, frozen=True, rename="camel"):
    payload_type: str
    payload: str
    signatures: tuple[EnvelopeSignature, ...]


_DECODER: Final = msgspec.json.Decoder(Envelope)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of a type and a body."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def seal(payload: bytes, payload_type: str, signers: Sequence[Signer]) -> bytes:
    """The envelope bytes for ``payload``, signed by each signer given."""
    message = pae(payload_type, payload)
    signatures = tuple(
        EnvelopeSignature(keyid=signer.public_key.hex(), sig=base64.b64encode(signer.sign(message)).decode())
        for signer in signers
    )
    envelope = Envelope(
        payload_type=payload_type, payload=base64.b64encode(payload).decode(), signatures=signatures
    )
    return _ENCODER.encode(envelope)


def open_envelope(
    data: bytes, *, payload_type: str, max_bytes: int, payload_keys: bool = True
) -> tuple[Envelope, bytes]:
    """Parse an envelope and its payload bytes (not yet trusted: check :func:`valid_signers`).

    ``payload_keys=False`` leaves the payload's repeated-key check to a caller that decodes it
    anyway: it calls :func:`refuse_repeated_payload_keys` with what it decoded (faster, same answer).
    """
    if len(data) > max_bytes:
        raise InvalidValueError(
            f"envelope of {len(data)} bytes is over the {max_bytes} byte limit", field="size"
        )
    if json_too_deep(data):
        raise InvalidValueError(NESTED_TOO_DEEP, field="envelope")
    try:
        envelope = _DECODER.decode(data)
        repeated = duplicate_key_of(data, envelope)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidValueError(f"not a DSSE envelope: {exc}", field="envelope") from None
    if repeated is not None:
        # Two readers could take different payloads or signatures from it: refuse it.
        raise InvalidValueError(f"the envelope repeats the key {repeated!r}", field="envelope")
    if envelope.payload_type != payload_type:
        raise InvalidValueError(
            f"payload type {envelope.payload_type!r} is not {payload_type!r}", field="payloadType"
        )
    try:
        payload = base64.b64decode(envelope.payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValueError("payload is not base64", field="payload") from None
    if json_too_deep(payload):
        # Refused here, before any caller decodes it: the same bound on every Python.
        raise InvalidValueError(NESTED_TOO_DEEP, field="payload")
    if payload_keys:
        refuse_repeated_payload_keys(payload)
    return envelope, payload


def refuse_repeated_payload_keys(payload: bytes, decoded: object = None) -> None:
    """Refuse a payload with a key twice in one object, as :func:`open_envelope` does.

    ``decoded``: what a typed msgspec decoder made of ``payload``, if it could (see
    :func:`coop.governance.canonical.duplicate_key_of`); None reads the bytes alone.
    """
    try:
        repeated_inside = duplicate_key_of(payload, decoded)
    except ValueError:
        repeated_inside = None  # not JSON: what the payload must be is the caller's to check
    if repeated_inside is not None:
        raise InvalidValueError(f"the payload repeats the key {repeated_inside!r}", field="payload")


def valid_signers(envelope: Envelope, payload: bytes, keys: Mapping[str, bytes]) -> set[str]:
    """The key ids among ``keys`` whose signature over exactly these bytes is valid."""
    message = pae(envelope.payload_type, payload)
    good: set[str] = set()
    for signature in envelope.signatures:
        key = keys.get(signature.keyid)
        if key is None:
            continue
        try:
            raw = base64.b64decode(signature.sig, validate=True)
        except (binascii.Error, ValueError):
            continue
        if verify(key, message, raw):
            good.add(signature.keyid)
    return good
