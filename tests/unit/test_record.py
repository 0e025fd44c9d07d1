"""The record vocabulary: licences and buckets, attribution, contributor hashes."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from coop.governance import (
    Attribution,
    AttributionMode,
    InvalidValueError,
    License,
    contributor_hash,
    parse_attribution,
)


@pytest.mark.parametrize(
    ("licence", "bucket", "share_alike"),
    [
        (License.CC0, "cc0", False),
        (License.CC_BY, "cc-by", False),
        (License.CC_BY_SA, "cc-by-sa", True),
    ],
)
def test_license_bucket_names_each_licence(licence: License, bucket: str, share_alike: bool) -> None:
    assert licence.bucket == bucket
    assert licence.share_alike is share_alike
    assert License.from_bucket(bucket) is licence


def test_license_from_unknown_bucket_is_refused() -> None:
    with pytest.raises(InvalidValueError):
        License.from_bucket("cc-by-nc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("anonymous", Attribution(AttributionMode.ANONYMOUS)),
        ("username", Attribution(AttributionMode.USERNAME, "ada")),
        ("pseudonym:Night Owl", Attribution(AttributionMode.PSEUDONYM, "Night Owl")),
    ],
)
def test_parse_attribution_valid_modes(text: str, expected: Attribution) -> None:
    assert parse_attribution(text, username="ada") == expected


@pytest.mark.parametrize("text", ["pseudonym:", "pseudonym:" + "x" * 65, "public", "username"])
def test_parse_attribution_invalid_names_field(text: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_attribution(text, username=None)
    assert caught.value.field == "attribution"


def test_contributor_hash_is_hmac_of_provider_and_id() -> None:
    salt = b"s" * 32
    expected = hmac.new(salt, b"openwebui:u-1", hashlib.sha256).hexdigest()
    assert contributor_hash(salt, "openwebui", "u-1") == expected
    assert contributor_hash(b"t" * 32, "openwebui", "u-1") != expected
    assert contributor_hash(salt, "local", "u-1") != expected
