"""The Bluesky channel end to end: ``coop publish --channel bluesky`` as a real process.

The network edge is faked: :mod:`xrpc_fake` is a local PDS on 127.0.0.1 speaking the XRPC
methods the real ``atproto`` client calls (createSession, createRecord, deleteRecord); the
node, the command line and the client library are the real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coop.node.contributions.rights import withdraw_contribution
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process, seq_of
from nodeproc import ENV, coop
from xrpc_fake import fake_pds

pytestmark = pytest.mark.integration

HANDLE = "coop.example.org"
PASSWORD = "app-pass-1234"


def _node(tmp_path: Path, service: str, *, records: int = 3) -> tuple[Path, list[str]]:
    """A node with one release of ``records`` public records, its channel pointed at ``service``."""
    node = make_node(tmp_path, name="Post Co-op")
    try:
        member, _token = make_member(node, "sam")
        uids = [contribute(node, member, license="CC-BY-4.0") for _ in range(records)]
        process(node)
        node.cut_release()
        root = node.data.root
    finally:
        node.close()
    config = root / "node.toml"
    text = config.read_text()
    text = text.replace('bluesky = ""', f'bluesky = "{HANDLE}"')
    text = text.replace('bluesky_service = "https://bsky.social"', f'bluesky_service = "{service}"')
    config.write_text(
        text.replace('public_url = "http://127.0.0.1:8000"', 'public_url = "https://coop.example.org"')
    )
    return root, uids


def _publish(root: Path, *args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in ENV.items() if k != "COOP_BLUESKY_PASSWORD"}
    if password is not None:
        env["COOP_BLUESKY_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "coop.node.cli", "publish", str(root), "--channel", "bluesky", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _rows(root: Path) -> list[tuple[int, str, str | None, int | None, int | None]]:
    node = Node(root)
    try:
        return node.store.read(
            lambda c: [
                (int(r[0]), str(r[1]), r[2], r[3], r[4])
                for r in c.execute(
                    "SELECT seq, state, ref, published_at, retracted_at FROM channel_records"
                    " WHERE channel = 'bluesky' ORDER BY seq"
                )
            ]
        )
    finally:
        node.close()


def _seq_of(root: Path, uid: str) -> int:
    node = Node(root)
    try:
        return seq_of(node, uid)
    finally:
        node.close()


def _withdraw(root: Path, uid: str, *, revise: bool = False) -> None:
    """The record ``uid`` withdrawn now; with ``revise``, the releases revised at once."""
    node = Node(root)
    try:
        now = node.now()
        node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=None, now=now))
        if revise:
            node.revise_releases()
    finally:
        node.close()


def test_bluesky_dry_run_prints_the_posts_and_sends_nothing(tmp_path: Path) -> None:
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url)
        result = _publish(root, "--dry-run", password=None)  # a dry run needs no password
        assert result.returncode == 0, result.stderr
        assert pds.calls == []  # nothing reached the PDS, not even a login
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dry run: would publish v1 to bluesky coop.example.org")
    posts = [line.removeprefix("post: ") for line in lines if line.startswith("post: ")]
    assert posts[0] == "Post Co-op released v1: 3 records (CC-BY-4.0) https://coop.example.org/datasets/v1"
    assert len(posts) == 4
    for uid in uids:
        assert any(p.endswith(f"— good, CC-BY-4.0 https://coop.example.org/browse/{uid}") for p in posts)
    assert _rows(root) == []


def test_bluesky_publish_posts_once_and_deletes_withdrawn_posts(tmp_path: Path) -> None:
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url)
        first = _publish(root, "--json")
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert [p["release"] for p in report["shipped"]] == ["v1"]
        assert len(pds.posts) == 4  # the announcement and three previews
        announcement = next(iter(pds.posts.values()))
        assert announcement["text"].startswith("Post Co-op released v1: 3 records")
        # The link is a facet over its UTF-8 bytes.
        link = announcement["facets"][0]
        text = announcement["text"].encode()
        assert (
            text[link["index"]["byteStart"] : link["index"]["byteEnd"]]
            == b"https://coop.example.org/datasets/v1"
        )
        for record in pds.posts.values():
            assert len(record["text"]) <= 300
        rows = _rows(root)
        assert len(rows) == 3 and all(
            state == "merged" and ref in pds.posts for _s, state, ref, _p, _r in rows
        )

        # A second publish: nothing new, nothing posted twice.
        again = _publish(root)
        assert again.returncode == 0, again.stderr
        assert "nothing to publish" in again.stdout
        assert len(pds.posts) == 4 and pds.calls.count("com.atproto.repo.createRecord") == 4

        # A record withdrawn: its post is deleted at the next publish, and the ledger says when.
        withdrawn_seq = _seq_of(root, uids[0])
        gone_uri = next(ref for seq, _st, ref, _p, _r in rows if seq == withdrawn_seq)
        _withdraw(root, uids[0])
        third = _publish(root)
        assert third.returncode == 0, third.stderr
        assert pds.deleted == [gone_uri] and gone_uri not in pds.posts
        after = {seq: (state, retracted) for seq, state, _ref, _p, retracted in _rows(root)}
        assert after[withdrawn_seq][0] == "tombstoned" and after[withdrawn_seq][1] is not None
        assert all(r is None for seq, (_s, r) in after.items() if seq != withdrawn_seq)
        assert pds.calls.count("com.atproto.repo.createRecord") == 4  # still nothing posted twice
        # Once deleted, never deleted again.
        _publish(root)
        assert pds.deleted == [gone_uri]


def test_bluesky_bad_password_is_one_line_naming_the_field(tmp_path: Path) -> None:
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, _uids = _node(tmp_path, pds.url, records=1)
        result = _publish(root, password="wrong")
        assert result.returncode == 2  # refused input, not "unexpected"
        assert "COOP_BLUESKY_PASSWORD" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
        assert pds.posts == {}
        as_json = _publish(root, "--json", password="wrong")
        assert as_json.returncode != 0
        problem = json.loads(as_json.stdout or as_json.stderr)
        assert "COOP_BLUESKY_PASSWORD" in json.dumps(problem)
    assert _rows(root) == []


def test_bluesky_publish_member_who_said_no_is_never_previewed(tmp_path: Path) -> None:
    """A member who said no is never previewed; the release is still announced."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        node = make_node(tmp_path, name="Post Co-op")
        try:
            yes, _ = make_member(node, "yes")
            no, _ = make_member(node, "no")
            shown = contribute(node, yes, license="CC-BY-4.0")
            quiet = contribute(node, no, license="CC-BY-4.0")
            node.store.write(lambda c: c.execute("UPDATE members SET announce = 0 WHERE id = ?", (no.id,)))
            process(node)
            node.cut_release()
            root = node.data.root
        finally:
            node.close()
        config = root / "node.toml"
        text = config.read_text().replace('bluesky = ""', f'bluesky = "{HANDLE}"')
        config.write_text(
            text.replace('bluesky_service = "https://bsky.social"', f'bluesky_service = "{pds.url}"')
        )
        result = _publish(root)
        assert result.returncode == 0, result.stderr
        texts = pds.texts()
    assert any(shown in t for t in texts)
    assert not any(quiet in t for t in texts)
    assert texts[0].startswith("Post Co-op released v1: 2 records")


def test_bluesky_unreachable_service_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """Nothing listens at the service (the fake PDS of xrpc_fake, stopped): exit 2 with a reason."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        gone = pds.url  # the fake stops at the end of the block: nothing listens there after
    root, _uids = _node(tmp_path, gone, records=1)
    result = _publish(root)
    assert result.returncode == 2
    assert "channels.bluesky_service" in result.stderr and "Traceback" not in result.stderr
    assert "ConnectError" in result.stderr  # the reason, not an empty one
    assert len(result.stderr.strip().splitlines()) == 1


def _live_refs(root: Path) -> dict[int, str]:
    return {seq: str(ref) for seq, _st, ref, _p, retracted in _rows(root) if retracted is None}


def test_bluesky_member_who_unticks_announce_has_posts_deleted_at_next_publish(tmp_path: Path) -> None:
    """Unticking *announce* after the posts went out deletes them at the next publish (dry run
    lists them first); the network edge is the fake PDS of xrpc_fake."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url, records=2)
        assert _publish(root).returncode == 0
        posted = _live_refs(root)
        assert len(posted) == 2
        node = Node(root)
        try:
            node.store.write(
                lambda c: c.execute(
                    "UPDATE members SET announce = 0 WHERE id ="
                    " (SELECT member_id FROM contributions WHERE uid = ?)",
                    (uids[0],),
                )
            )
        finally:
            node.close()
        dry = _publish(root, "--dry-run", password=None)
        assert dry.returncode == 0, dry.stderr
        # One member made every record here: both posts go.
        deletions = [line for line in dry.stdout.splitlines() if line.startswith("delete ")]
        assert sorted(deletions) == sorted(f"delete {uri}" for uri in posted.values())
        assert pds.deleted == []
        result = _publish(root)
        assert result.returncode == 0, result.stderr
        assert sorted(pds.deleted) == sorted(posted.values())
        assert _live_refs(root) == {}
        assert all(retracted is not None for *_x, retracted in _rows(root))
        _publish(root)
        assert len(pds.deleted) == 2  # once deleted, never again


def test_bluesky_embargo_deletes_only_the_posts_it_now_covers(tmp_path: Path) -> None:
    """An embargo set after posting takes the covered records' posts down at the next publish;
    the network edge is the fake PDS of xrpc_fake."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, _uids = _node(tmp_path, pds.url, records=2)
        assert _publish(root).returncode == 0
        posted = _live_refs(root)
        coop("embargo", "on", str(root))
        result = _publish(root)
        assert result.returncode == 0, result.stderr
        assert sorted(pds.deleted) == sorted(posted.values())
        assert _live_refs(root) == {}
        assert pds.calls.count("com.atproto.repo.createRecord") == 3  # nothing posted again


def test_bluesky_revision_first_seen_is_announced(tmp_path: Path) -> None:
    """v1 revised to v1-r2 before the account announced anything: v1-r2 is announced (and a
    later revision is not); the network edge is the fake PDS of xrpc_fake."""
    with fake_pds(HANDLE, PASSWORD) as pds:
        root, uids = _node(tmp_path, pds.url, records=3)
        _withdraw(root, uids[0], revise=True)
        result = _publish(root)
        assert result.returncode == 0, result.stderr
        texts = pds.texts()
        assert texts and texts[0].startswith("Post Co-op released v1")
        assert "2 records" in texts[0]
        assert len(texts) == 3 and not any(uids[0] in t for t in texts)
        _withdraw(root, uids[1], revise=True)
        again = _publish(root)
        assert again.returncode == 0, again.stderr
        assert pds.calls.count("com.atproto.repo.createRecord") == 3  # v1 announced once
        assert len(pds.deleted) == 1  # the withdrawn record's post
