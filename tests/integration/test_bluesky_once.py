"""The Bluesky channel posts each post exactly once, and never follows a redirect.

The network edge is faked: :mod:`xrpc_fake` is a local PDS on 127.0.0.1 (createRecord honours
record keys and refuses a taken one as the reference PDS does); the node, the command line and
the ``atproto`` client are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bluesky_channel import HANDLE, PASSWORD, _node, _publish

from xrpc_fake import fake_pds

pytestmark = pytest.mark.integration


def test_bluesky_publish_cut_short_then_rerun_posts_each_post_once(tmp_path: Path) -> None:
    """The 3rd createRecord reaches the PDS, then the PDS goes down (its reply lost): the run
    fails; the re-run sends the same record keys, finds the taken ones there, doubles nothing."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, _uids = _node(tmp_path, pds.url, records=4)
        pds.lose_reply_at = 3
        first = _publish(root)
        assert first.returncode != 0
        assert len(pds.posts) == 3
        pds.down = False
        second = _publish(root)
        assert second.returncode == 0, second.stderr
        texts = pds.texts()
        assert len(texts) == 5  # one announcement + four previews
        assert len(set(texts)) == 5
        assert sum("released v1" in t for t in texts) == 1
        keys = sorted(uri.rsplit("/", 1)[1] for uri in pds.posts)
        third = _publish(root)  # announced: nothing more
        assert third.returncode == 0, third.stderr
        assert sorted(uri.rsplit("/", 1)[1] for uri in pds.posts) == keys


def test_bluesky_redirect_is_refused_and_the_password_stays(tmp_path: Path) -> None:
    """createSession answers 307 to another 127.0.0.1 port: that port never sees the password."""
    with fake_pds(HANDLE, PASSWORD) as elsewhere, fake_pds(HANDLE, PASSWORD) as pds:
        pds.redirect_to = elsewhere.url
        root, _uids = _node(tmp_path, pds.url, records=1)
        done = _publish(root, "--json")
        assert done.returncode != 0
        assert elsewhere.calls == []
        assert elsewhere.passwords == []
        assert pds.posts == {}
        lines = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "redirect" in lines[0]
        assert "channels.bluesky_service" in json.dumps(json.loads(lines[0]))
