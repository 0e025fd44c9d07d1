"""Peer request authentication: RFC 9421 HTTP Message Signatures with Ed25519.

A request between nodes covers ``@method``, ``@authority``, ``@path``,
``@query`` and ``content-digest`` (RFC 9530, SHA-256 of the body), with the
parameters ``created``, ``expires``, ``nonce``, ``keyid`` (the signer's node
id) and ``alg="ed25519"``.  The scheme is left out of the covered target on
purpose: a TLS-terminating proxy changes it, not the rest.

The verifier checks the digest against the body, the signature against the
key of a pinned peer, the time window, and that the nonce was not seen
before (a replay cache bounded in size and time).  Pure: callers pass the
clock value and the cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit

from coop.federation.errors import RequestAuthError
from coop.governance.signing import public_key, sign, verify

__all__ = [
    "COMPONENTS",
    "MAX_WINDOW",
    "ReplayCache",
    "authority_of",
    "content_digest",
    "sign_request",
    "verify_request",
]

COMPONENTS: Final = ("@method", "@authority", "@path", "@query", "content-digest")
MAX_WINDOW: Final = 300  # seconds a signature may live
_SKEW: Final = 30
_LABEL: Final = "coop"
_TAG: Final = "coop-gossip"
_INPUT: Final = re.compile(
    r"^coop=\((?P<components>[^)]*)\);created=(?P<created>\d+);expires=(?P<expires>\d+);"
    r'nonce="(?P<nonce>[A-Za-z0-9_-]{16,64})";keyid="(?P<keyid>[0-9a-f]{64})";alg="ed25519";tag="coop-gossip"$'
)


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _authority_path_query(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    authority = (parts.hostname or "").lower()
    if parts.port is not None and parts.port not in (80, 443):
        authority += f":{parts.port}"
    return authority, parts.path or "/", f"?{parts.query}"


def authority_of(url: str) -> str:
    """The ``@authority`` a signature over ``url`` covers (lower-case host, port unless 80/443)."""
    return _authority_path_query(url)[0]


def _base(method: str, url: str, digest: str, params: str) -> bytes:
    authority, path, query = _authority_path_query(url)
    lines = [
        f'"@method": {method.upper()}',
        f'"@authority": {authority}',
        f'"@path": {path}',
        f'"@query": {query}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode()


def _params(created: int, expires: int, nonce: str, keyid: str) -> str:
    covered = " ".join(f'"{c}"' for c in COMPONENTS)
    return f'({covered});created={created};expires={expires};nonce="{nonce}";keyid="{keyid}";alg="ed25519";tag="{_TAG}"'


def sign_request(method: str, url: str, body: bytes, *, seed: bytes, now: int, nonce: str) -> dict[str, str]:
    """The headers that sign this request: Content-Digest, Signature-Input, Signature."""
    keyid = public_key(seed).hex()
    digest = content_digest(body)
    params = _params(now, now + MAX_WINDOW // 2, nonce, keyid)
    signature = sign(seed, _base(method, url, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{_LABEL}={params}",
        "Signature": f"{_LABEL}=:{base64.b64encode(signature).decode()}:",
    }


class ReplayCache:
    """Nonces seen within the signature window; bounded, oldest dropped first."""

    def __init__(self, max_size: int = 100_000) -> None:
        self.max_size = max_size
        self._seen: OrderedDict[str, int] = OrderedDict()

    def seen(self, nonce: str, *, expires: int, now: int) -> bool:
        """Record a nonce; True if it was already there (a replay)."""
        while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self.max_size):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return True
        self._seen[nonce] = expires
        return False


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_of: Callable[[str], bytes | None],
    now: int,
    replay: ReplayCache,
    authorities: frozenset[str] | None = None,
) -> str:
    """Check a signed request; return the signer's key id, or raise :class:`RequestAuthError`.

    ``authorities`` are this node's own addresses: a request signed for another node's
    address (a captured request replayed here) is refused, whatever Host header it carries.
    """
    if authorities is not None and authority_of(url) not in authorities:
        raise RequestAuthError("the request was signed for another address than this node's")
    lowered = {k.lower(): v for k, v in headers.items()}
    digest = lowered.get("content-digest")
    signature_input = lowered.get("signature-input")
    signature = lowered.get("signature")
    if not digest or not signature_input or not signature:
        raise RequestAuthError("the request is not signed (Content-Digest, Signature-Input, Signature)")
    if digest != content_digest(body):
        raise RequestAuthError("Content-Digest does not match the body")
    match = _INPUT.match(signature_input)
    if match is None or match.group("components") != " ".join(f'"{c}"' for c in COMPONENTS):
        raise RequestAuthError("Signature-Input does not cover method, target and content digest as required")
    created, expires = int(match.group("created")), int(match.group("expires"))
    if created > now + _SKEW or expires < now or expires - created > MAX_WINDOW:
        raise RequestAuthError("the signature is not valid at this time")
    keyid = match.group("keyid")
    key = key_of(keyid)
    if key is None:
        raise RequestAuthError("the signing key is not a pinned peer of this node")
    if not signature.startswith(f"{_LABEL}=:") or not signature.endswith(":"):
        raise RequestAuthError("Signature is malformed")
    try:
        raw = base64.b64decode(signature[len(_LABEL) + 2 : -1], validate=True)
    except (binascii.Error, ValueError):
        raise RequestAuthError("Signature is not base64") from None
    params = signature_input[len(_LABEL) + 1 :]
    if not verify(key, _base(method, url, digest, params), raw):
        raise RequestAuthError("the signature does not verify")
    if replay.seen(match.group("nonce"), expires=expires, now=now):
        raise RequestAuthError("this request was already received (replay)")
    return keyid
