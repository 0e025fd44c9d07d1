"""What ``coop publish`` prints per release shipped: a review offered is not said to be live.

No git here: the Publication rows are built by hand, as ``publish`` would return them.
"""

from __future__ import annotations

from coop.node.cli.node_cmds import shipped_line
from coop.node.releases.publications import Publication


def _publication(release: str, state: str) -> Publication:
    return Publication(
        channel="git", target="/srv/data.git", release=release, ref="abc123", records=3, at=0, state=state
    )


def test_shipped_line_review_offered_names_the_branch_not_a_live_target() -> None:
    assert shipped_line(_publication("v2-r3", "open")) == "v2-r3 offered for review on git coop/v2-r3 abc123"


def test_shipped_line_straight_push_keeps_the_arrow() -> None:
    assert shipped_line(_publication("v3", "merged")) == "v3 -> git /srv/data.git abc123"
