"""What a node does once at open, and only once: statements of old releases, the eval token."""

from __future__ import annotations

import stat
from pathlib import Path

from coop.node.releases.statement import STATEMENT, STATEMENTS_STEP
from coop.node.runtime import Node
from coop.node.storage.upgrade import upgrade_step_pending

from factories import contribute, make_member, make_node, process


def _node_with_a_release(tmp_path: Path) -> tuple[Node, Path]:
    node = make_node(tmp_path)
    member, _ = make_member(node)
    contribute(node, member, text="User: one?\nAssistant: two.", label="good", license="CC0-1.0")
    process(node)
    summary = node.cut_release()
    return node, node.data.releases_path / summary.label


def test_missing_statements_are_signed_once_after_an_upgrade_then_never_looked_for(tmp_path: Path) -> None:
    node, folder = _node_with_a_release(tmp_path)
    root = node.data.root
    assert not node.store.read(lambda c: upgrade_step_pending(c, STATEMENTS_STEP))  # struck at first open
    (folder / STATEMENT).unlink()  # as a release cut before statements were stored at the cut
    node.close()
    reopened = Node(root)
    try:
        # The step is done: a later open does not stat every release folder again.
        assert not (folder / STATEMENT).exists()
        reopened.store.write(
            lambda c: c.execute("INSERT INTO upgrade_steps (name) VALUES (?)", (STATEMENTS_STEP,))
        )
    finally:
        reopened.close()
    upgraded = Node(root)  # an upgrade (migration 17) puts the step back: the statement is signed
    try:
        assert (folder / STATEMENT).is_file()
        assert not upgraded.store.read(lambda c: upgrade_step_pending(c, STATEMENTS_STEP))
    finally:
        upgraded.close()


def test_the_eval_token_is_made_by_an_explicit_call_mode_0600(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        assert not node.eval_token_path.exists()  # opening a node makes no token
        node.ensure_eval_token()
        first = node.eval_token_path.read_bytes()
        assert stat.S_IMODE(node.eval_token_path.stat().st_mode) == 0o600 and len(first.strip()) >= 32
        node.ensure_eval_token()
        assert node.eval_token_path.read_bytes() == first  # made once, never replaced
        assert node.evaluation.token == first.decode().strip()
    finally:
        node.close()
