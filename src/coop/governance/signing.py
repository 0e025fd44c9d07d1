"""Ed25519 signatures over exact bytes (PyNaCl): the one place the core touches keys.

Pure computation: keys come in as bytes, nothing is read or written here.
"""

from __future__ import annotations

import hashlib

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

__all__ = ["Signer", "fingerprint", "public_key", "sign", "verify"]


def sign(seed: bytes, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature of ``message`` by the key with this 32-byte seed."""
    return bytes(SigningKey(seed).sign(message).signature)


def public_key(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


def verify(key: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid signature of exactly these bytes by this public key."""
    try:
        VerifyKey(key).verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def fingerprint(key: bytes) -> str:
    """A short, readable digest of a public key (for people comparing keys)."""
    digest = hashlib.sha256(key).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, 16, 4))


class Signer:
    """One Ed25519 signing key: it signs bytes and names its public key; the seed stays inside.

    Passed wherever something is signed, instead of the raw seed, so no caller can log, copy or
    mistake it for another byte string. ``repr`` shows the fingerprint only.
    """

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature of exactly these bytes."""
        return bytes(self._key.sign(message).signature)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def __repr__(self) -> str:
        return f"Signer({self.fingerprint})"
