"""Peer request authentication: RFC 9421 HTTP Message Signatures with Ed25519.

A request between nodes covers ``@method``, ``@authority``, ``@path``,
``@query`` and ``content-digest`` (RFC 9530, SHA-256 of the body), with the
parameters ``created``, ``expires``, ``nonce``, ``keyid`` (the signer's node
id), ``alg="ed25519"`` and ``tag="coop-gossip"``.  The scheme is left out of
the covered target on purpose: a TLS-terminating proxy changes it, not the rest.

``Signature-Input`` and ``Signature`` are read as RFC 9651 Structured Field
dictionaries (``http-sf``), so any conforming signer verifies: parameters in
any order, extra parameters, other labels beside ours (ours is the one tagged
``coop-gossip``, or the only one), covered components in any order and beyond
the required set.  The signature base is rebuilt from the received parameters,
re-serialized as RFC 9421 section 2.3 says, never from our own layout.

The covered ``@authority`` is this node's own (its ``public_url``, or the socket a
request arrived on): the ``Host`` header never decides, so a request a peer
signed for another co-op does not verify here.

Clocks: a signature may be created up to :data:`CLOCK_SKEW` (300 s, the
tolerance of other signed-request protocols, e.g. AWS SigV4 and Kerberos) in
this node's future and is honoured up to that long after its ``expires``;
outside that, :class:`ClockSkewError` carries the measured offset.

The verifier checks, in this order: the signature against the key of a pinned
peer (over the covered components, the ``Content-Digest`` header value among
them: all there before the body is read), the time window, the digest against
the body, and that the nonce was not seen before (a :class:`ReplayCache`).
The signature comes first so that a refusal for anything else is only ever
reported for a request its key's holder signed (``RequestAuthError.signer``):
a stranger claiming a peer's key id cannot write refusals or clock skew under
its name.  Pure: callers pass the clock value and the cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import http_sf
import msgspec

from coop.federation.errors import ClockSkewError, RequestAuthError
from coop.governance.signing import Signer, verify

__all__ = [
    "CLOCK_SKEW",
    "COMPONENTS",
    "MAX_WINDOW",
    "MemoryReplayCache",
    "ReplayCache",
    "SignatureInput",
    "authority_of",
    "check_signature_headers",
    "content_digest",
    "sign_request",
    "verify_request",
]

COMPONENTS: Final = ("@method", "@authority", "@path", "@query", "content-digest")
MAX_WINDOW: Final = 300  # seconds a signature may live (expires - created)
CLOCK_SKEW: Final = 300  # seconds two clocks may disagree (created in our future, expires in our past)
_LABEL: Final = "coop"
_TAG: Final = "coop-gossip"
_ALG: Final = "ed25519"
_KEYID: Final = re.compile(r"[0-9a-f]{64}")
_NONCE: Final = re.compile(r"[\x21-\x7e]{16,128}")
_DIGESTS: Final = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_DERIVED: Final = frozenset({"@method", "@authority", "@path", "@query", "@request-target"})


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


def _params(created: int, expires: int, nonce: str, keyid: str) -> str:
    covered = " ".join(f'"{c}"' for c in COMPONENTS)
    return f'({covered});created={created};expires={expires};nonce="{nonce}";keyid="{keyid}";alg="{_ALG}";tag="{_TAG}"'


def sign_request(
    method: str, url: str, body: bytes, *, signer: Signer, now: int, nonce: str
) -> dict[str, str]:
    """The headers that sign this request: Content-Digest, Signature-Input, Signature."""
    keyid = signer.public_key.hex()
    digest = content_digest(body)
    params = _params(now, now + MAX_WINDOW // 2, nonce, keyid)
    authority, path, query = _authority_path_query(url)
    values = {
        "@method": method.upper(),
        "@authority": authority,
        "@path": path,
        "@query": query,
        "content-digest": digest,
    }
    base = _base([(c, values[c]) for c in COMPONENTS], params)
    signature = signer.sign(base)
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{_LABEL}={params}",
        "Signature": f"{_LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def _base(components: list[tuple[str, str]], params: str) -> bytes:
    """The RFC 9421 signature base: one line per covered component, then the parameters."""
    lines = [f"{http_sf.ser((name, {}))}: {value}" for name, value in components]
    lines.append(f'"@signature-params": {params}')
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError:
        raise RequestAuthError("a covered component is not ASCII") from None


class ReplayCache(Protocol):
    """Where nonces of accepted requests are remembered (memory here; SQLite in the node).

    ``expires`` is the time after which the nonce can no longer be accepted (its
    signature's ``expires`` plus :data:`CLOCK_SKEW`): the cache may forget it then.
    """

    def seen(self, nonce: str, *, expires: int, now: int) -> bool:
        """Record a nonce; True if it was already there (a replay)."""
        ...


class MemoryReplayCache:
    """Nonces seen within the signature window, in memory; bounded, oldest dropped first."""

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


class SignatureInput(msgspec.Struct, frozen=True):
    """Our signature of a request, as read from its ``Signature-Input`` and ``Signature``."""

    label: str
    components: tuple[str, ...]  # in the signer's order
    params: str  # the serialized ``@signature-params`` value the signature covers
    created: int
    expires: int
    nonce: str
    keyid: str
    signature: bytes


def _dictionary(value: str, name: str) -> dict[str, Any]:
    def duplicate(key: str, context: str) -> None:
        raise RequestAuthError(f"{name} repeats {key!r}")

    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary", on_duplicate_key=duplicate)
    except (http_sf.StructuredFieldError, UnicodeEncodeError) as exc:
        raise RequestAuthError(f"{name} is not a Structured Field dictionary: {exc}") from None
    assert isinstance(parsed, dict)
    return parsed


def _pick(inputs: dict[str, Any]) -> str:
    """Our label: the one tagged ``coop-gossip``, or the only one when it carries no tag."""
    tagged = [label for label, member in inputs.items() if _member_params(member).get("tag") == _TAG]
    if len(tagged) == 1:
        return tagged[0]
    if len(tagged) > 1:
        raise RequestAuthError(f'Signature-Input holds {len(tagged)} signatures tagged "{_TAG}"')
    if len(inputs) == 1:
        (label,) = inputs
        if "tag" not in _member_params(inputs[label]):
            return label
    raise RequestAuthError(f'Signature-Input holds no signature tagged "{_TAG}"')


def _member_params(member: Any) -> dict[str, Any]:
    if isinstance(member, tuple) and len(member) == 2 and isinstance(member[1], dict):
        return member[1]
    return {}


def _int_param(params: Mapping[str, Any], name: str) -> int:
    value = params.get(name)
    if type(value) is not int:
        raise RequestAuthError(f'Signature-Input needs an integer "{name}" parameter')
    return value


def _str_param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if type(value) is not str:
        raise RequestAuthError(f'Signature-Input needs a string "{name}" parameter')
    return value


def _read(headers: Mapping[str, str]) -> SignatureInput:
    lowered = {k.lower(): v for k, v in headers.items()}
    signature_input = lowered.get("signature-input")
    signature = lowered.get("signature")
    if not lowered.get("content-digest") or not signature_input or not signature:
        raise RequestAuthError("the request is not signed (Content-Digest, Signature-Input, Signature)")
    inputs = _dictionary(signature_input, "Signature-Input")
    signatures = _dictionary(signature, "Signature")
    label = _pick(inputs)
    member = inputs[label]
    if not (isinstance(member, tuple) and isinstance(member[0], list)):
        raise RequestAuthError(f"Signature-Input member {label!r} is not an inner list")
    items, params = member
    components: list[str] = []
    for item in items:
        name, item_params = item
        if type(name) is not str or item_params or name != name.lower():
            raise RequestAuthError(
                f"Signature-Input covers {http_sf.ser(item)}: only lower-case names without parameters"
            )
        if name in components:
            raise RequestAuthError(f"Signature-Input covers {name!r} twice")
        if name.startswith("@") and name not in _DERIVED:
            raise RequestAuthError(f"Signature-Input covers {name!r}, which this node does not resolve")
        components.append(name)
    missing = [c for c in COMPONENTS if c not in components]
    if missing:
        raise RequestAuthError(
            f"Signature-Input does not cover {', '.join(missing)} (method, target and digest)"
        )
    if params.get("alg") != _ALG or type(params["alg"]) is not str:
        raise RequestAuthError(f'Signature-Input needs alg="{_ALG}"')
    if "tag" in params and params["tag"] != _TAG:
        raise RequestAuthError(f'Signature-Input is tagged for another protocol, not "{_TAG}"')
    created, expires = _int_param(params, "created"), _int_param(params, "expires")
    nonce, keyid = _str_param(params, "nonce"), _str_param(params, "keyid")
    if not _NONCE.fullmatch(nonce):
        raise RequestAuthError("the nonce is 16 to 128 visible ASCII characters")
    if not _KEYID.fullmatch(keyid):
        raise RequestAuthError("keyid is a node id: 64 lower-case hex digits")
    if not 0 < expires - created <= MAX_WINDOW:
        raise RequestAuthError(f"a signature lives at most {MAX_WINDOW} s (expires - created)")
    raw = signatures.get(label)
    if not (isinstance(raw, tuple) and isinstance(raw[0], bytes)):
        raise RequestAuthError(f"Signature has no byte sequence labelled {label!r}")
    return SignatureInput(
        label=label,
        components=tuple(components),
        # Re-serialized from what was received (RFC 9421 section 2.3), the signer's order kept.
        params=http_sf.ser({label: member})[len(label) + 1 :],
        created=created,
        expires=expires,
        nonce=nonce,
        keyid=keyid,
        signature=raw[0],
    )


def _check_time(sig: SignatureInput, now: int) -> None:
    """The time window, for a signature that verified (the refusal names its signer)."""
    offset = sig.created - now
    if sig.created > now + CLOCK_SKEW:
        raise ClockSkewError(
            f"the signature was created {offset:+d} s from this node's clock, more than the"
            f" {CLOCK_SKEW} s of skew tolerated: check the clocks (NTP)",
            offset=offset,
            signer=sig.keyid,
        )
    if sig.expires < now - CLOCK_SKEW:
        # Anyone holding one old request of the peer's can send it again: an expired signature
        # says nothing about the peer's clock, so it is booked under no peer (signer unset).
        raise ClockSkewError(
            f"the signature expired (created {offset:+d} s from this node's clock, more than the"
            f" {CLOCK_SKEW} s of skew tolerated): a stale request, or clocks apart (NTP)",
            offset=offset,
        )


def _check_signature(
    sig: SignatureInput,
    key: bytes,
    method: str,
    url: str,
    headers: Mapping[str, str],
    authorities: Collection[str],
) -> None:
    """The Ed25519 signature over the base rebuilt from the request line and headers (the
    ``Content-Digest`` header value, not the body), with one of this node's own authorities."""
    fields = {k.lower(): v.strip(" \t") for k, v in headers.items()}
    claimed, path, query = _authority_path_query(url)

    def base(authority: str) -> bytes:
        values = {
            "@method": method.upper(),
            "@authority": authority,
            "@path": path,
            "@query": query,
            "@request-target": path + query,
        }
        covered = []
        for name in sig.components:
            value = values.get(name, fields.get(name))
            if value is None:
                raise RequestAuthError(f"the signature covers {name!r}, which the request lacks")
            covered.append((name, value))
        return _base(covered, sig.params)

    if not any(verify(key, base(own), sig.signature) for own in sorted(set(authorities))):
        if claimed not in authorities and verify(key, base(claimed), sig.signature):
            # Only to explain the refusal: the Host header never makes a request verify.
            raise RequestAuthError(
                f"the request was signed for another address ({claimed}) than this node's"
                f" ({', '.join(sorted(set(authorities)))})"
            )
        raise RequestAuthError("the signature does not verify")


def check_signature_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    key_of: Callable[[str], bytes | None],
    now: int,
    authorities: Collection[str],
) -> SignatureInput:
    """What can be checked before the body is read: the signature headers parse, cover what is
    required, name a pinned peer's key, verify (over the ``Content-Digest`` header, one of
    ``authorities`` and the request line of ``url``), and only then: are valid now.

    Raises :class:`RequestAuthError`; its ``signer`` is set only when the signature verified.
    """
    sig = _read(headers)
    key = key_of(sig.keyid)
    if key is None:
        raise RequestAuthError("the signing key is not a pinned peer of this node")
    _check_signature(sig, key, method, url, headers, authorities)
    _check_time(sig, now)
    return sig


def _check_digest(value: str, body: bytes) -> None:
    members = _dictionary(value, "Content-Digest")
    known = {name: member for name, member in members.items() if name in _DIGESTS}
    if not known:
        raise RequestAuthError("Content-Digest has no sha-256 or sha-512 digest")
    for name, member in known.items():
        if not (isinstance(member, tuple) and isinstance(member[0], bytes)):
            raise RequestAuthError(f"Content-Digest {name} is not a byte sequence")
        if not hmac.compare_digest(member[0], _DIGESTS[name](body).digest()):
            raise RequestAuthError("Content-Digest does not match the body")


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_of: Callable[[str], bytes | None],
    now: int,
    replay: ReplayCache,
    authorities: Collection[str],
) -> str:
    """Check a signed request; return the signer's key id, or raise :class:`RequestAuthError`.

    ``authorities`` are this node's own addresses (``host[:port]``): the covered
    ``@authority`` must be one of them.  ``url`` gives the path and query only; its host
    (the request's ``Host`` header) is never trusted, so a request signed for another node's
    address (a captured request replayed here) does not verify, whatever Host it carries.
    """
    sig = check_signature_headers(method, url, headers, key_of=key_of, now=now, authorities=authorities)
    # The very value the signature covered (the same lower-casing, the last of duplicates).
    digest = {k.lower(): v.strip(" \t") for k, v in headers.items()}["content-digest"]
    # A body that does not match: a captured request's headers with another body, or a peer's
    # broken request; either way nothing proves the peer sent this body (booked under no peer).
    _check_digest(digest, body)
    if replay.seen(sig.nonce, expires=sig.expires + CLOCK_SKEW, now=now):
        # Anyone who captured the peer's request can send it again: a replay says nothing about
        # the peer, so it is booked under no peer (signer unset), like an unverified request.
        raise RequestAuthError("this request was already received (replay)")
    return sig.keyid
