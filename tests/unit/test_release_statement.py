"""Issue 12: a release's statement is signed once, at its cut, and every exit serves those bytes.

Before, each exit re-signed the summary with the node's current key, so after a key rotation
the same ``v1`` carried different statements on different channels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from test_channel_hf import FakeHub  # the Hub's in-memory stand-in (the one mock)

from coop.governance import Signer
from coop.node.channels.publish import publish
from coop.node.contributions.rights import withdraw_contribution
from coop.node.errors import NodeError
from coop.node.http.app import create_app
from coop.node.releases.repository import get_federated_release, get_release
from coop.node.releases.statement import STATEMENT, stored_statement, verify_release
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path)
    try:
        member, _ = make_member(n)
        contribute(n, member, license="CC-BY-4.0")
        process(n)
        yield n
    finally:
        n.close()


def _over_http(node: Node) -> bytes:
    with TestClient(create_app(node, background=False)) as http:
        answer = http.get(f"/releases/v1/{STATEMENT}")
        assert answer.status_code == 200
        return answer.content


def _on_the_hub(node: Node, repo: str) -> bytes:
    hub = FakeHub()
    publish(node, "hf", target=repo, api=hub)
    return hub.files[STATEMENT]


def test_statement_is_the_same_on_every_exit_before_and_after_a_key_rotation(node: Node) -> None:
    summary = node.cut_release()
    folder = node.data.releases_path / "v1"
    stored = (folder / STATEMENT).read_bytes()  # written by the cut, beside the files
    old_key = node.identity.public_key
    assert verify_release(folder, old_key) == summary
    assert _over_http(node) == stored
    assert _on_the_hub(node, "coop/before") == stored

    node.federation.issue()
    node.federation.rotate_key(actor="local-admin")
    assert node.identity.public_key != old_key

    # The same bytes on HTTP and on a channel published after the rotation ...
    assert _over_http(node) == stored
    assert _on_the_hub(node, "coop/after") == stored
    assert (folder / STATEMENT).read_bytes() == stored
    # ... and they still verify with the key that signed them, not with the new one.
    assert verify_release(folder, old_key) == summary
    with pytest.raises(NodeError, match="not signed by this key"):
        verify_release(folder, node.identity.public_key)
    # A release cut after the rotation is signed by the new key.
    node.cut_release()
    assert verify_release(node.data.releases_path / "v2", node.identity.public_key).name == "v2"


def test_a_federated_release_is_signed_at_its_cut_too(node: Node) -> None:
    node.cut_release()
    node.cut_federated_release()
    summary = node.store.read(lambda c: get_federated_release(c, 1))
    folder = node.data.releases_path / "federated" / "v1"
    assert verify_release(folder, node.identity.public_key) == summary
    with TestClient(create_app(node, background=False)) as http:
        served = http.get(f"/releases/federated/v1/{STATEMENT}")
    assert served.status_code == 200, served.text
    assert served.content == (folder / STATEMENT).read_bytes()


def test_a_release_without_a_statement_is_signed_when_the_node_opens_before_any_rotation(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    contribute(node, member, license="CC-BY-4.0")
    process(node)
    summary = node.cut_release()
    root = node.data.root
    old_key = node.identity.public_key
    (node.data.releases_path / "v1" / STATEMENT).unlink()  # as an earlier version of the node left it
    node.close()
    reopened = Node(root)  # an upgrade opens the node: the statement is signed by the key that cut v1
    try:
        assert (reopened.data.releases_path / "v1" / STATEMENT).exists()
        reopened.federation.issue()
        reopened.federation.rotate_key(actor="local-admin")
        assert verify_release(reopened.data.releases_path / "v1", old_key) == summary
        assert _over_http(reopened) == (reopened.data.releases_path / "v1" / STATEMENT).read_bytes()
    finally:
        reopened.close()


def test_a_release_cut_before_statements_were_stored_is_signed_once_on_first_need(node: Node) -> None:
    summary = node.cut_release()
    folder = node.data.releases_path / "v1"
    (folder / STATEMENT).unlink()  # as a release cut by an earlier version of the node holds none

    first = _over_http(node)
    assert (folder / STATEMENT).read_bytes() == first  # stored by the first exit that needed it
    assert verify_release(folder, node.identity.public_key) == summary
    # Written once: another key (a rotation since) gets the stored bytes, never a new statement.
    other = Signer(bytes(range(32)))
    assert stored_statement(folder, summary, other) == first
    assert _on_the_hub(node, "coop/legacy") == first
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_a_revision_is_signed_when_it_is_made(node: Node) -> None:
    member, _ = make_member(node)
    gone = contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
    v1 = (node.data.releases_path / "v1" / STATEMENT).read_bytes()
    node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))
    node.revise_releases()
    revised = node.store.read(lambda c: get_release(c, 1))
    folder = node.data.releases_path / revised.label
    assert revised.label == "v1-r2"
    assert verify_release(folder, node.identity.public_key) == revised
    assert _over_http(node) == (folder / STATEMENT).read_bytes() != v1
