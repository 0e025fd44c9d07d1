"""Peer request signatures (issue 11, items 15, 17, 20): RFC 9421 both ways with an independent
implementation (http-message-signatures), Structured Field parsing, the node's own authority,
clock skew."""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms

from coop.federation import (
    CLOCK_SKEW,
    ClockSkewError,
    MemoryReplayCache,
    ReplayCache,
    RequestAuthError,
    check_signature_headers,
    content_digest,
    sign_request,
    verify_request,
)
from coop.federation.httpsig import COMPONENTS
from coop.governance.signing import Signer, public_key, sign

SEED = bytes(range(32))
KEYID = public_key(SEED).hex()
NOW = 1_760_000_000
A_URL = "http://a.example:8001/federation/v1/summary"
B_URL = "http://b.example:8002/federation/v1/summary"
BODY = b'{"summary": "' + b"0" * 64 + b'"}'


def _key_of(keyid: str) -> bytes | None:
    return bytes.fromhex(keyid) if keyid == KEYID else None


def _verify(
    headers: dict[str, str],
    *,
    url: str = A_URL,
    body: bytes = BODY,
    now: int = NOW,
    authorities: frozenset[str] = frozenset({"a.example:8001"}),
    replay: ReplayCache | None = None,
) -> str:
    return verify_request(
        "POST",
        url,
        headers,
        body,
        key_of=_key_of,
        now=now,
        replay=replay if replay is not None else MemoryReplayCache(),
        authorities=authorities,
    )


@dataclass
class _Message:
    """A requests-style prepared request, as http-message-signatures reads one."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def _private() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SEED)


def _their_signer() -> HTTPMessageSigner:
    return HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEYID: _private()}),
    )


def _at(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _their_headers(
    *, label: str = "sig1", components: tuple[str, ...] = tuple(reversed(COMPONENTS)), nonce: str = "n" * 24
) -> dict[str, str]:
    message = _Message("POST", A_URL, {"Content-Type": "application/json"})
    _their_signer().sign(
        message,
        key_id=KEYID,
        created=_at(NOW),
        expires=_at(NOW + 120),
        nonce=nonce,
        label=label,
        tag="coop-gossip",
        covered_component_ids=components,
        body=BODY,
    )
    return message.headers


# -- interop, both ways ------------------------------------------------------------------------


def test_verify_request_accepts_an_independent_signers_layout() -> None:
    headers = _their_headers()
    # Another label, the parameters in another order, the components reversed: still ours.
    assert headers["Signature-Input"].startswith('sig1=("content-digest" "@query" "@path"')
    assert headers["Signature-Input"].index("keyid") < headers["Signature-Input"].index("expires")
    assert _verify(headers) == KEYID


def test_verify_request_accepts_extra_covered_fields_in_any_order() -> None:
    headers = _their_headers(
        components=("content-type", "@path", *COMPONENTS[:2], "@query", "content-digest")
    )
    assert _verify(headers) == KEYID


def test_independent_verifier_accepts_our_signature() -> None:
    now = int(time.time())  # the library reads the wall clock; nothing here asserts on it
    headers = sign_request("POST", A_URL, BODY, signer=Signer(SEED), now=now, nonce="m" * 24)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={KEYID: Ed25519PublicKey.from_public_bytes(public_key(SEED))}, private_keys={}
        ),
    )
    (result,) = verifier.verify(
        _Message("POST", A_URL, dict(headers)),
        expect_tag="coop-gossip",
        require_components=COMPONENTS,
        body=BODY,
    )
    assert result.parameters["keyid"] == KEYID
    assert result.nonce == "m" * 24


def _handmade(
    params: str, *, label: str = "mine", others: str = "", authority: str = "a.example:8001", digest: str = ""
) -> dict[str, str]:
    """A signature whose ``@signature-params`` is exactly ``params`` (a layout we never emit)."""
    digest = digest or content_digest(BODY)
    lines = [
        '"@query": ?',
        '"@method": POST',
        f'"@authority": {authority}',
        '"content-digest": ' + digest,
        '"@path": /federation/v1/summary',
        f'"@signature-params": {params}',
    ]
    signature = base64.b64encode(sign(SEED, "\n".join(lines).encode())).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{others}{label}={params}",
        "Signature": f"{'other=:AAAA:, ' if others else ''}{label}=:{signature}:",
    }


_SHUFFLED = (
    '("@query" "@method" "@authority" "content-digest" "@path");tag="coop-gossip";'
    f'nonce="{"k" * 20}";alg="ed25519";app="x";expires={NOW + 60};keyid="{KEYID}";created={NOW}'
)


def test_verify_request_rebuilds_the_base_from_the_received_parameters() -> None:
    # Parameters in an order of their own, an extra one, and a second signature of another tag.
    others = 'other=("@method");created=1;tag="someone-else", '
    assert _verify(_handmade(_SHUFFLED, others=others)) == KEYID


def test_verify_request_picks_the_only_untagged_label() -> None:
    params = _SHUFFLED.replace('tag="coop-gossip";', "")
    assert _verify(_handmade(params)) == KEYID


# -- refusals ------------------------------------------------------------------------------------

_REFUSED = {
    "no tag among two labels": (_SHUFFLED.replace('tag="coop-gossip";', 'tag="x";'), "tagged"),
    "another protocol's tag": (_SHUFFLED.replace("coop-gossip", "not-ours"), "tagged"),
    "digest not covered": (_SHUFFLED.replace(' "content-digest"', ""), "content-digest"),
    "authority not covered": (_SHUFFLED.replace(' "@authority"', ""), "@authority"),
    "another algorithm": (_SHUFFLED.replace('alg="ed25519"', 'alg="rsa-pss-sha512"'), "alg"),
    "alg as a token": (_SHUFFLED.replace('alg="ed25519"', "alg=ed25519"), "alg"),
    "no nonce": (_SHUFFLED.replace(f'nonce="{"k" * 20}";', ""), "nonce"),
    "a window too long": (_SHUFFLED.replace(f"expires={NOW + 60}", f"expires={NOW + 3600}"), "lives at most"),
    "created as a string": (_SHUFFLED.replace(f"created={NOW}", f'created="{NOW}"'), "created"),
    "a component twice": (_SHUFFLED.replace('"@path")', '"@path" "@path")'), "twice"),
    "a component with parameters": (_SHUFFLED.replace('"@path")', '"@path";req)'), "parameters"),
    "an unresolved derived component": (
        _SHUFFLED.replace('"@path")', '"@path" "@target-uri")'),
        "@target-uri",
    ),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_verify_request_refuses(case: str) -> None:
    params, why = _REFUSED[case]
    others = 'other=("@method");tag="y", ' if case == "no tag among two labels" else ""
    with pytest.raises(RequestAuthError, match=why):
        _verify(_handmade(params, others=others))


def test_verify_request_refuses_malformed_structured_fields() -> None:
    headers = _handmade(_SHUFFLED)
    for name, value in (
        ("Signature-Input", "mine=(("),
        ("Signature", "mine=notbytes"),
        ("Signature-Input", "a=1, a=2"),
    ):
        with pytest.raises(RequestAuthError):
            _verify({**headers, name: value})


def test_verify_request_refuses_an_altered_body_and_accepts_a_sha512_digest() -> None:
    headers = _their_headers()
    with pytest.raises(RequestAuthError, match="does not match"):
        _verify(headers, body=BODY + b" ")
    # Content-Digest is a Structured Field dictionary: SHA-512 alone, or beside SHA-256, is fine.
    sha512 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    for digest in (f"sha-512=:{sha512}:", f"{content_digest(BODY)}, sha-512=:{sha512}:, md5=:AAAA:"):
        assert _verify(_handmade(_SHUFFLED, digest=digest)) == KEYID
    bad = f"sha-512=:{base64.b64encode(bytes(64)).decode()}:, {content_digest(BODY)}"
    with pytest.raises(RequestAuthError, match="does not match"):
        _verify(_handmade(_SHUFFLED, digest=bad))


def test_verify_request_refuses_a_replay_and_an_unpinned_key() -> None:
    replay = MemoryReplayCache()
    headers = _their_headers()
    assert _verify(headers, replay=replay) == KEYID
    with pytest.raises(RequestAuthError, match="replay"):
        _verify(headers, replay=replay)
    stranger = sign_request("POST", A_URL, BODY, signer=Signer(bytes(32)), now=NOW, nonce="s" * 24)
    with pytest.raises(RequestAuthError, match="not a pinned peer"):
        _verify(stranger)


# -- item 15: the node's own authority, never the Host header ------------------------------------


def test_request_signed_for_another_node_is_refused_even_with_host_rewritten() -> None:
    headers = sign_request("POST", B_URL, BODY, signer=Signer(SEED), now=NOW, nonce="h" * 24)
    # Sent to A as captured (Host: b) and with the Host rewritten to A's own address.
    with pytest.raises(RequestAuthError, match="another address"):
        _verify(headers, url=B_URL)
    with pytest.raises(RequestAuthError, match="does not verify"):
        _verify(headers, url=A_URL)
    # B itself accepts it.
    assert _verify(headers, url=B_URL, authorities=frozenset({"b.example:8002"})) == KEYID


def test_request_signed_for_the_public_url_verifies_whatever_host_a_proxy_sends() -> None:
    headers = sign_request(
        "POST",
        "https://coop-a.example/federation/v1/summary",
        BODY,
        signer=Signer(SEED),
        now=NOW,
        nonce="p" * 24,
    )
    # A proxy passing Host: 127.0.0.1:8000 upstream: the node checks its own public authority.
    own = frozenset({"coop-a.example", "127.0.0.1:8000"})
    assert _verify(headers, url="http://127.0.0.1:8000/federation/v1/summary", authorities=own) == KEYID


# -- item 20: clock skew ---------------------------------------------------------------------------


def test_verify_request_tolerates_four_minutes_of_skew_either_way() -> None:
    ahead = sign_request("POST", A_URL, BODY, signer=Signer(SEED), now=NOW + 240, nonce="a" * 24)
    behind = sign_request("POST", A_URL, BODY, signer=Signer(SEED), now=NOW - 240, nonce="b" * 24)
    assert _verify(ahead) == KEYID
    assert _verify(behind) == KEYID


@pytest.mark.parametrize("offset", [CLOCK_SKEW + 60, -(CLOCK_SKEW + 200)])
def test_verify_request_beyond_the_skew_reports_the_measured_offset(offset: int) -> None:
    headers = sign_request("POST", A_URL, BODY, signer=Signer(SEED), now=NOW + offset, nonce="c" * 24)
    with pytest.raises(ClockSkewError) as caught:
        _verify(headers)
    assert caught.value.offset == offset
    assert f"{offset:+d} s" in caught.value.message
    # Found before the body is read, too.
    with pytest.raises(ClockSkewError):
        check_signature_headers(
            "POST", A_URL, headers, key_of=_key_of, now=NOW, authorities=frozenset({"a.example:8001"})
        )


def test_replay_cache_keeps_a_nonce_while_its_skewed_window_lasts() -> None:
    replay = MemoryReplayCache()
    headers = sign_request("POST", A_URL, BODY, signer=Signer(SEED), now=NOW, nonce="r" * 24)
    assert _verify(headers, replay=replay) == KEYID
    # Past expires but inside the skew the signature still verifies: the nonce must still be known.
    with pytest.raises(RequestAuthError, match="replay"):
        _verify(headers, replay=replay, now=NOW + CLOCK_SKEW)
