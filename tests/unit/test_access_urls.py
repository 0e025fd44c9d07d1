"""Signed URLs for gated files: any field changed, another grantee, expiry, a revoked grant."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest

from coop.node.access import urls
from coop.node.access.urls import UrlParts
from coop.node.errors import ForbiddenError

KEY = bytes(range(32))
PARTS = UrlParts(request_id=7, member_id=3, release="v2", path="cc-by-4.0/data.jsonl", expires_at=1_000)


def test_a_signature_verifies_for_exactly_what_it_binds() -> None:
    signature = urls.sign(KEY, PARTS)
    urls.verify(KEY, PARTS, signature, now=999)


@pytest.mark.parametrize(
    "changed",
    [
        {"request_id": 8},
        {"member_id": 4},  # another grantee presenting the same link
        {"release": "v3"},
        {"path": "cc-by-4.0/data.parquet"},
        {"path": "cc0-1.0/data.jsonl"},
        {"expires_at": 2_000},  # a link stretched by hand
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_field_changed_is_refused(changed: dict[str, object]) -> None:
    signature = urls.sign(KEY, PARTS)
    with pytest.raises(ForbiddenError) as refused:
        urls.verify(KEY, msgspec.structs.replace(PARTS, **changed), signature, now=0)
    assert refused.value.field == "sig"


def test_a_tampered_signature_or_another_key_is_refused() -> None:
    signature = urls.sign(KEY, PARTS)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for bad in (flipped, signature.upper(), signature[:-1], "", "zz" * 32):
        with pytest.raises(ForbiddenError):
            urls.verify(KEY, PARTS, bad, now=0)
    with pytest.raises(ForbiddenError):
        urls.verify(bytes(32), PARTS, signature, now=0)


def test_an_expired_link_is_refused() -> None:
    signature = urls.sign(KEY, PARTS)
    with pytest.raises(ForbiddenError) as refused:
        urls.verify(KEY, PARTS, signature, now=1_000)
    assert refused.value.field == "expires"


def test_the_url_carries_no_member_id_and_quotes_the_path() -> None:
    signed = urls.signed_url(KEY, msgspec.structs.replace(PARTS, member_id=987654, path="b/a b.jsonl"))
    assert signed.url.startswith("/gated/v2/b/a%20b.jsonl?grant=7&expires=1000&sig=")
    assert "987654" not in signed.url


def test_the_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "gated"
    first = urls.gated_key(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert urls.gated_key(path) == first
