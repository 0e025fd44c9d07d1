"""The Bluesky channel when the PDS misbehaves: a post it will not delete, a 429, a revision.

The network edge is faked: :mod:`xrpc_fake` is a local PDS on 127.0.0.1 (deleteRecord answers
400 for the posts in ``undeletable``; createRecord answers 429 with ``retry_after`` as its
Retry-After header); the node, the command line and the ``atproto`` client are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bluesky_channel import HANDLE, PASSWORD, _live_refs, _node, _publish, _seq_of

from coop.node.contributions.rights import withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, process
from xrpc_fake import fake_pds

pytestmark = pytest.mark.integration


def _withdraw(root: Path, *uids: str, revise: bool = False) -> None:
    node = Node(root)
    try:
        for uid in uids:
            now = node.now()
            node.store.write(
                lambda c, uid=uid, now=now: withdraw_contribution(c, uid=uid, member=None, now=now)
            )
        if revise:
            node.revise_releases()
    finally:
        node.close()


def _cut_another(root: Path) -> None:
    node = Node(root)
    try:
        member, _token = make_member(node, "kim")
        contribute(node, member, license="CC-BY-4.0")
        process(node)
        node.cut_release()
    finally:
        node.close()


def test_bluesky_undeletable_post_is_retried_and_never_blocks_the_release(tmp_path: Path) -> None:
    """Two withdrawn records' posts, the PDS refuses to delete one: the other goes, v2 is
    announced, exit 0 with one warning line; the refused post is deleted at the next publish."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url, records=3)
        assert _publish(root).returncode == 0
        posted = _live_refs(root)
        stuck, gone = posted[_seq_of(root, uids[0])], posted[_seq_of(root, uids[1])]
        pds.undeletable.add(stuck)
        _withdraw(root, uids[0], uids[1])
        _cut_another(root)

        result = _publish(root, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["deletions_failed"] == 1
        assert [p["release"] for p in report["shipped"]][-1] == "v2"
        warning = result.stderr.strip().splitlines()
        assert len(warning) == 1
        assert warning[0].startswith("warning: 1 deletion failed, retried at the next publish: ")
        assert "Could not delete record" in warning[0]
        assert gone in pds.deleted and gone not in pds.posts and stuck in pds.posts
        assert sum("released v2" in t for t in pds.texts()) == 1
        assert _live_refs(root)[_seq_of(root, uids[0])] == stuck  # not retracted: tried again later

        pds.undeletable.clear()
        again = _publish(root)
        assert again.returncode == 0, again.stderr
        assert "warning" not in again.stderr
        assert stuck not in pds.posts and stuck not in _live_refs(root).values()


def test_bluesky_rate_limit_says_how_long_to_wait(tmp_path: Path) -> None:
    """A 429 with Retry-After: 30 on the first post: one line saying the PDS asks to wait 30 s."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, _uids = _node(tmp_path, pds.url, records=1)
        pds.retry_after = "30"
        result = _publish(root)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "the PDS asks to wait 30 s" in lines[0]
        assert "Traceback" not in result.stderr


def test_bluesky_revision_after_a_cut_short_run_reuses_the_announcement_key(tmp_path: Path) -> None:
    """v1's announcement reaches the PDS but its reply is lost; a record is withdrawn (v1-r2);
    the re-run keys v1-r2's posts on v1's cut, finds the announcement there: one on the PDS."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url, records=2)
        pds.lose_reply_at = 1
        assert _publish(root).returncode != 0
        assert len(pds.posts) == 1
        pds.down = False
        _withdraw(root, uids[0], revise=True)
        result = _publish(root, "--json")
        assert result.returncode == 0, result.stderr
        assert [p["release"] for p in json.loads(result.stdout)["shipped"]] == ["v1-r2"]
        assert sum("released v1" in t for t in pds.texts()) == 1
        assert len(pds.posts) == 2  # the announcement and the one record left
