"""The eval token: made by an explicit call (once, mode 0600), not as a side effect."""

from __future__ import annotations

import stat
from pathlib import Path

from factories import make_node


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
