"""Signed URLs for gated files: short-lived, bound to one grant, one grantee, one file.

A URL is ``/gated/{release}/{path}?grant=N&expires=T&sig=HEX``.  The signature is
HMAC-SHA256, under the node's own 32-byte key (``keys/gated``, mode 0600), over the grant
(request id), the grantee's member id, the release, the path and the expiry.  The member id
is not in the URL: the node takes it from the credential that comes with the URL (the
grantee's own session or token), so a URL passed on to someone else does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Final
from urllib.parse import quote

import msgspec

from coop.node.errors import ForbiddenError, InputError

__all__ = ["KEY_BYTES", "SignedUrl", "UrlParts", "gated_key", "sign", "signed_url", "verify"]

KEY_BYTES: Final = 32
_DOMAIN: Final = "coop-flywheel/gated-url/1"
_SIG: Final = re.compile(r"^[0-9a-f]{64}$")


class SignedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """A URL that serves one gated file to its grantee until ``expires_at`` (Unix seconds).

    ``url`` is absolute where the node knows its public address (the API answers so, from
    ``node.public_url``); ``url_path`` is the same URL without scheme and host (``/gated/...``).
    ``path`` is the file's path inside the release."""

    url: str
    release: str
    path: str
    expires_at: int
    url_path: str


class UrlParts(msgspec.Struct, frozen=True, kw_only=True):
    """What a signature binds."""

    request_id: int
    member_id: int
    release: str
    path: str
    expires_at: int


def gated_key(path: Path) -> bytes:
    """The node's URL-signing key: created once (random, mode 0600), then read."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by another process a moment ago
        else:
            try:
                os.write(fd, secrets.token_bytes(KEY_BYTES))
            finally:
                os.close(fd)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise OSError(f"{path} is not a {KEY_BYTES}-byte key")
    return key


def _message(parts: UrlParts) -> bytes:
    fields = (
        _DOMAIN,
        str(parts.request_id),
        str(parts.member_id),
        parts.release,
        parts.path,
        str(parts.expires_at),
    )
    for field in fields:
        if "\n" in field:
            raise InputError("a release or path holds no line break", field="path")
    return "\n".join(fields).encode()


def sign(key: bytes, parts: UrlParts) -> str:
    """The signature (64 hex digits) over ``parts``."""
    return hmac.new(key, _message(parts), hashlib.sha256).hexdigest()


def signed_url(key: bytes, parts: UrlParts) -> SignedUrl:
    """The URL for ``parts``, signed."""
    query = f"grant={parts.request_id}&expires={parts.expires_at}&sig={sign(key, parts)}"
    url = f"/gated/{quote(parts.release, safe='')}/{quote(parts.path, safe='/')}?{query}"
    return SignedUrl(
        url=url, release=parts.release, path=parts.path, expires_at=parts.expires_at, url_path=url
    )


def verify(key: bytes, parts: UrlParts, signature: str, *, now: int) -> None:
    """Refuse (403) a signature that does not bind exactly ``parts``, or a URL past its expiry."""
    if not _SIG.match(signature) or not hmac.compare_digest(sign(key, parts), signature):
        raise ForbiddenError(
            "this download link is not valid for you: ask for a new one at /access", field="sig"
        )
    if now >= parts.expires_at:
        raise ForbiddenError("this download link has expired: ask for a new one at /access", field="expires")
