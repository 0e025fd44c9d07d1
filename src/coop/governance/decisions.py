"""Proposals, votes and their tally: pure functions over counts and a clock value.

A proposal passes the moment both hold:

* quorum: yes + no + abstain votes are at least ``quorum_percent`` of the
  electorate fixed when the proposal opened;
* threshold: yes votes are more than ``threshold_percent`` of yes + no.

If it has not passed when its voting time ends, it expires and changes
nothing.  Integer arithmetic only: no rounding question can arise.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import msgspec

__all__ = ["Choice", "ProposalStatus", "Tally", "decide", "tally"]


class Choice(enum.StrEnum):
    YES = "yes"
    NO = "no"
    ABSTAIN = "abstain"


class ProposalStatus(enum.StrEnum):
    OPEN = "open"
    PASSED = "passed"
    EXPIRED = "expired"


class Tally(msgspec.Struct, frozen=True):
    """The count so far; truthy when the proposal has met quorum and threshold."""

    yes: int
    no: int
    abstain: int
    electorate: int
    quorum_needed: int
    quorum_met: bool
    threshold_met: bool

    @property
    def voted(self) -> int:
        return self.yes + self.no + self.abstain

    @property
    def missing(self) -> int:
        """Entitled voters who have not voted yet."""
        return max(self.electorate - self.voted, 0)

    @property
    def met(self) -> bool:
        return self.quorum_met and self.threshold_met

    def __bool__(self) -> bool:
        return self.met


def tally(
    choices: Iterable[Choice], *, electorate: int, quorum_percent: int, threshold_percent: int
) -> Tally:
    yes = no = abstain = 0
    for choice in choices:
        if choice is Choice.YES:
            yes += 1
        elif choice is Choice.NO:
            no += 1
        else:
            abstain += 1
    voted = yes + no + abstain
    # ceil(electorate * quorum / 100) without floats; an empty electorate can never reach quorum.
    quorum_needed = max(-(-electorate * quorum_percent // 100), 1)
    return Tally(
        yes=yes,
        no=no,
        abstain=abstain,
        electorate=electorate,
        quorum_needed=quorum_needed,
        quorum_met=voted >= quorum_needed and electorate > 0,
        threshold_met=yes * 100 > threshold_percent * (yes + no),
    )


def decide(count: Tally, *, now: int, closes_at: int) -> ProposalStatus:
    if count.met:
        return ProposalStatus.PASSED
    if now >= closes_at:
        return ProposalStatus.EXPIRED
    return ProposalStatus.OPEN
