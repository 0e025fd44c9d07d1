"""No source file grows past ~500 lines without saying at its top why it is one piece."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "coop"
LIMIT = 520  # ~500: a few lines of slack, not a second module's worth
REASON = "Longer than ~500 lines on purpose:"


def test_long_modules_state_why_at_their_top() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LIMIT and REASON not in text[:4000]:
            unexplained.append(f"{path.relative_to(SRC)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"split these, or say why at the top ({REASON!r}): {unexplained}"
