"""Ed25519 signatures over exact bytes (PyNaCl): the one place the core touches keys.

Pure computation: keys come in as bytes, nothing is read or written here.
"""

from __future__ import annotations

import hashlib

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

__all__ = ["fingerprint", "public_key", "sign", "verify"]


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
