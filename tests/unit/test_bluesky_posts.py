"""The Bluesky channel's posts (pure text and link facets), its password, and its lazy import.

No network here: the posts are built from values; the end to end run against a faked PDS is
tests/integration/test_bluesky_channel.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coop.governance import License
from coop.node.channels.base import ChannelError
from coop.node.channels.bluesky import MAX_GRAPHEMES, PASSWORD_ENV, announcement, app_password, record_post
from coop.node.channels.previews import Preview
from coop.node.releases.model import BucketSummary, ReleaseSummary


def _bucket(name: str, licence: License, records: int) -> BucketSummary:
    return BucketSummary(
        name=name, license=licence, records=records, content_usage="", labels={}, languages={}, files=()
    )


def _release(*buckets: BucketSummary) -> ReleaseSummary:
    return ReleaseSummary(
        version=3,
        name="v3",
        coop="Tea Co-op",
        node_id="n" * 64,
        created_at=1,
        records=sum(b.records for b in buckets),
        buckets=buckets,
        tombstones=0,
        files=(),
    )


def _preview(title: str, uid: str = "0190aaaa-0000-7000-8000-000000000001") -> Preview:
    return Preview(
        uid=uid,
        seq=7,
        title=title,
        license="CC-BY-4.0",
        label="good",
        url=f"https://coop.example.org/browse/{uid}",
        version=3,
        created_at=1,
    )


def test_announcement_names_release_count_licences_and_link() -> None:
    release = _release(_bucket("cc0", License.CC0, 2), _bucket("cc-by", License.CC_BY, 3))
    draft = announcement(
        coop="Tea Co-op", release=release, url="https://coop.example.org/datasets/v3", gated=frozenset()
    )
    assert (
        draft.text
        == "Tea Co-op released v3: 5 records (CC-BY-4.0, CC0-1.0) https://coop.example.org/datasets/v3"
    )
    start, end, url = draft.links[0]
    assert draft.text.encode()[start:end].decode() == url and draft.seq is None


def test_announcement_counts_gated_buckets_as_the_dataset_page_and_marks_them() -> None:
    """/datasets/v3 and the Atom feed count every bucket (a gated one listed, its files not
    linked): the announcement counts the same and marks the gated licence."""
    release = _release(_bucket("cc0", License.CC0, 1), _bucket("cc-by-sa", License.CC_BY_SA, 9))
    draft = announcement(
        coop="Tea", release=release, url="https://x.org/datasets/v3", gated=frozenset({"CC-BY-SA-4.0"})
    )
    assert f"{release.records} records (CC-BY-SA-4.0 gated, CC0-1.0)" in draft.text


def test_record_post_quotes_title_label_licence_and_links_its_page() -> None:
    draft = record_post(_preview("Why is the sky blue? ☕"))
    assert draft.text.startswith(
        "“Why is the sky blue? ☕” — good, CC-BY-4.0 https://coop.example.org/browse/"
    )
    start, end, url = draft.links[0]
    assert draft.text.encode("utf-8")[start:end].decode("utf-8") == url == _preview("x").url
    assert draft.seq == 7


@given(title=st.text(min_size=0, max_size=400), coop=st.text(min_size=1, max_size=400))
def test_posts_fit_300_graphemes_and_links_cover_their_bytes(title: str, coop: str) -> None:
    for draft in (
        record_post(_preview(title)),
        announcement(
            coop=coop,
            release=_release(_bucket("cc0", License.CC0, 1)),
            url="https://coop.example.org/datasets/v3",
            gated=frozenset(),
        ),
    ):
        assert len(draft.text) <= MAX_GRAPHEMES  # code points >= graphemes: it fits
        (start, end, url), *_ = draft.links
        assert draft.text.encode("utf-8")[start:end] == url.encode("utf-8")
        assert draft.text.endswith(url)


def test_app_password_from_env_first_then_private_file(tmp_path: Path) -> None:
    assert app_password(tmp_path, {PASSWORD_ENV: " s3cret "}) == "s3cret"
    with pytest.raises(ChannelError) as missing:
        app_password(tmp_path, {})
    assert missing.value.field == PASSWORD_ENV
    key = tmp_path / "keys" / "bluesky"
    key.parent.mkdir()
    key.write_text("from-file\n")
    key.chmod(0o644)
    with pytest.raises(ChannelError) as loose:
        app_password(tmp_path, {})
    assert loose.value.field == "keys/bluesky" and "600" in loose.value.message
    key.chmod(0o600)
    assert app_password(tmp_path, {}) == "from-file"


def test_publish_module_does_not_import_atproto() -> None:
    """``coop --help`` and every other command must not pay atproto's import time."""
    code = (
        "import sys, coop.node.channels.publish, coop.node.cli;"
        " assert not any(m.startswith('atproto') for m in sys.modules), 'atproto imported'"
    )
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
