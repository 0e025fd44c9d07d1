"""Issue 14: withdrawals grouped into one revision run (the rewrite job takes every pending one).

Each release that holds any of them is rewritten once (each of its touched
buckets once), and none of the withdrawn text is left in any file the node
serves.  The search for a batch reads a bucket file once (one pass over its
``"uid"`` fields), and finds exactly what the one-by-one search finds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases import revision as revision_module
from coop.node.releases.repository import get_release
from coop.node.runtime import Node

from factories import chat_text, contribute, make_member, make_node, process

LICENCES = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        yield node
    finally:
        node.close()


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_revision_batch_of_withdrawals_rewrites_each_touched_release_once_and_leaves_no_text(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = make_member(node)
    secrets: dict[str, str] = {}
    kept: set[str] = set()
    for release in range(3):  # three releases, each holding the ones before (cumulative)
        for n in range(6):
            secret = f"batch-secret-{release}-{n}-quokka"
            uid = contribute(node, member, license=LICENCES[n % 3], text=chat_text(secret))
            if n < 4:
                secrets[uid] = secret  # 12 withdrawn: more than the one-by-one search handles
            else:
                kept.add(uid)
        process(node)
        node.cut_release()
    releases = node.data.releases_path
    assert all(s.encode() in _all_bytes(releases) for s in secrets.values())

    rewrites: Counter[tuple[str, str]] = Counter()
    original = revision_module._rewrite_bucket

    def counting(old: Path, tmp: Path, bucket, drop, **kwargs):  # type: ignore[no-untyped-def]
        rewrites[(old.name, bucket.name)] += 1
        return original(old, tmp, bucket, drop, **kwargs)

    monkeypatch.setattr(revision_module, "_rewrite_bucket", counting)
    for uid in secrets:  # all committed before the revision job runs: one batch
        node.store.write(lambda c, uid=uid: withdraw_contribution(c, uid=uid, member=None, now=node.now()))
    report = node.revise_releases()

    assert report.tombstones == len(secrets)
    assert sorted(r.release for r in report.revised) == ["v1", "v2", "v3"]  # each release once
    assert all(r.revision == 2 for r in report.revised)
    assert [r.removed for r in sorted(report.revised, key=lambda r: r.release)] == [4, 8, 12]
    assert rewrites and max(rewrites.values()) == 1  # each touched bucket file rewritten once
    assert len(rewrites) == 3 * 3  # three releases, three buckets each
    everything = _all_bytes(releases)
    for secret in secrets.values():
        assert secret.encode() not in everything  # no file, checksum list, card or statement
    for version in (1, 2, 3):
        summary = node.store.read(lambda c, v=version: get_release(c, v))
        held = {
            json.loads(line)["uid"]
            for b in summary.buckets
            for line in (releases / summary.label / b.name / "data.jsonl").read_text().splitlines()
        }
        assert not held & set(secrets)
        assert held == {uid for uid in kept if int(_release_of(node, uid)) <= version}
    assert not node.revise_releases()  # nothing left pending


def _release_of(node: Node, uid: str) -> int:
    return node.store.read(
        lambda c: c.execute("SELECT released_in FROM contributions WHERE uid = ?", (uid,)).fetchone()[0]
    )


def test_revision_batch_search_finds_what_the_one_by_one_search_finds(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"content": f"text {n}", "label": "good", "uid": f"u-{n:03d}"} for n in range(50)]
    # A row whose text quotes another row's uid (as a field, even): only u-007 itself is its row.
    rows.append({"content": 'see "uid":"u-007" and u-009', "label": "good", "uid": "u-100"})
    path.write_bytes(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows) + b"\n")
    wanted = {("", f"u-{n:03d}"): "withdrawn" for n in (7, 9, 11, 13, 21, 34, 40, 49, 99)}
    batch = revision_module._keys_in(path, wanted, federated=False)  # 9 uids: one pass
    assert batch == set(wanted) - {("", "u-099")}
    few = {key: why for key, why in wanted.items() if key[1] in ("u-007", "u-009")}
    assert revision_module._keys_in(path, few, federated=False) == set(few)  # one by one
    federated = tmp_path / "fed.jsonl"
    federated.write_bytes(
        b"".join(
            json.dumps({"origin": o, **r}, sort_keys=True).encode() + b"\n"
            for o in ("a", "b")
            for r in rows[:20]
        )
    )
    keys = {("b", f"u-{n:03d}"): "at origin" for n in range(12)}
    assert revision_module._keys_in(federated, keys, federated=True) == set(keys)
