"""Tallies: quorum counts every vote cast, threshold compares yes with yes + no, integers only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coop.governance import Choice, ProposalStatus, decide, tally

Y, N, A = Choice.YES, Choice.NO, Choice.ABSTAIN


@pytest.mark.parametrize(
    ("votes", "electorate", "quorum", "threshold", "met", "missing"),
    [
        pytest.param([Y, Y, Y], 5, 50, 50, True, 2, id="majority-with-quorum"),
        pytest.param([Y, Y], 5, 50, 50, False, 3, id="below-quorum"),
        pytest.param([Y, A, A], 5, 50, 50, True, 2, id="abstain-counts-for-quorum"),
        pytest.param([Y, N, A], 5, 50, 50, False, 2, id="tie-is-not-more-than-half"),
        pytest.param([Y, Y, N], 3, 60, 66, True, 0, id="two-thirds-beats-66"),
        pytest.param([Y, N, N, Y, Y], 5, 60, 66, False, 0, id="three-fifths-misses-66"),
        pytest.param([A, A, A], 3, 50, 50, False, 0, id="all-abstain-no-yes"),
        pytest.param([], 0, 0, 0, False, 0, id="empty-electorate-never-decides"),
        pytest.param([Y], 1, 100, 0, True, 0, id="unanimous-one"),
    ],
)
def test_tally_table(
    votes: list[Choice], electorate: int, quorum: int, threshold: int, met: bool, missing: int
) -> None:
    count = tally(votes, electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    assert count.met is met
    assert bool(count) is met
    assert count.missing == missing


def test_tally_quorum_needed_rounds_up() -> None:
    assert tally([], electorate=7, quorum_percent=50, threshold_percent=50).quorum_needed == 4


def test_decide_open_passed_expired() -> None:
    met = tally([Y, Y], electorate=2, quorum_percent=50, threshold_percent=50)
    unmet = tally([Y], electorate=4, quorum_percent=50, threshold_percent=50)
    assert decide(met, now=0, closes_at=10) is ProposalStatus.PASSED
    assert decide(unmet, now=5, closes_at=10) is ProposalStatus.OPEN
    assert decide(unmet, now=10, closes_at=10) is ProposalStatus.EXPIRED


_VOTES = st.lists(st.sampled_from(list(Choice)), max_size=40)


@given(_VOTES, st.integers(0, 60), st.integers(0, 100), st.integers(0, 99))
def test_tally_another_yes_never_unmeets(
    votes: list[Choice], extra: int, quorum: int, threshold: int
) -> None:
    electorate = len(votes) + extra + 1
    before = tally(votes, electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    after = tally([*votes, Y], electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    assert not before.met or after.met


@given(_VOTES, st.integers(0, 60), st.integers(0, 100), st.integers(0, 99))
def test_tally_counts_add_up(votes: list[Choice], extra: int, quorum: int, threshold: int) -> None:
    electorate = len(votes) + extra
    count = tally(votes, electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    assert count.yes + count.no + count.abstain + count.missing == electorate
    # Quorum, stated without the implementation's ceiling division.
    assert count.quorum_met == (
        electorate > 0 and count.voted >= 1 and count.voted * 100 >= quorum * electorate
    )


@given(_VOTES, st.integers(1, 60), st.integers(0, 100), st.integers(0, 99))
def test_tally_order_of_votes_does_not_matter(
    votes: list[Choice], extra: int, quorum: int, threshold: int
) -> None:
    electorate = len(votes) + extra
    forward = tally(votes, electorate=electorate, quorum_percent=quorum, threshold_percent=threshold)
    backward = tally(
        list(reversed(votes)), electorate=electorate, quorum_percent=quorum, threshold_percent=threshold
    )
    assert forward == backward
