"""What a model builder sees while a request runs: co-ops answering k/n, each decline with its reason."""

from __future__ import annotations

from coop.eval.report import Decline, NodeAnswer
from coop.node.evaluation.requester import answer_lines


def test_answers_are_counted_and_each_decline_says_why() -> None:
    answers = [
        NodeAnswer(node_id="a" * 64, attestation="{}", coop="Alpha"),
        NodeAnswer(node_id="b" * 64, decline=Decline.EMBARGO, coop="Beta"),
        NodeAnswer(node_id="c" * 64, attestation="{}", coop="Gamma"),
        NodeAnswer(node_id="d" * 64, decline=Decline.UNREACHABLE, detail="no answer in time"),
    ]
    assert answer_lines(answers) == [
        "co-ops answering 2/4",
        "  Beta declined (embargo)",
        f"  {'d' * 16} declined (no_answer): no answer in time",
    ]
