"""Joint actions as the disclosure policy sees them: what co-ops acting together demand.

A joint action (a freeze, a selective embargo, evaluation-only, a preference shift, a
volume cap) is proposed and co-signed by k of n co-ops (:mod:`coop.federation.joint`).
Here is only its pure vocabulary: the kind, the selector of an embargo and
:class:`JointRules`, what the actions binding one co-op demand now.  The disclosure
policy reads the rules beside the co-op's own switches (:class:`~.disclosure.CollectiveState`).
"""

from __future__ import annotations

import enum
import re
from typing import Final

import msgspec

from coop.governance.errors import InvalidValueError
from coop.governance.record import License
from coop.governance.settings import ascii_fold

__all__ = ["JointKind", "JointRules", "JointSelector"]

_BCP47: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class JointKind(enum.StrEnum):
    """What a joint action does to the co-ops bound by it."""

    FREEZE = "freeze"  # like the quality freeze: nothing of the co-op flows beyond it, no cut
    EMBARGO = "embargo"  # selective embargo: records matching the selector stay in
    EVAL_ONLY = "eval-only"  # records created at/after the start are evaluation-only
    PREFERENCE = "preference"  # new records default to the action's ``ai_use`` while it is in force
    VOLUME_CAP = "volume-cap"  # at most ``monthly_records`` admitted by cuts per month


class JointSelector(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which records a joint embargo holds: any tag, language or licence named; all empty = all.

    Tags and languages compare as :meth:`coop.governance.settings.Embargo.covers` does.
    """

    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # BCP 47
    licenses: tuple[License, ...] = ()

    def __post_init__(self) -> None:
        for index, language in enumerate(self.languages):
            if not _BCP47.match(language):
                raise InvalidValueError(
                    f"{language!r} is not a language tag", field=f"selector.languages[{index}]"
                )

    @property
    def whole(self) -> bool:
        """Selects the whole co-op (nothing named)."""
        return not self.tags and not self.languages and not self.licenses

    def covers(
        self, *, tags: tuple[str, ...] | list[str], language: str | None, license: License | str | None
    ) -> bool:
        """Whether a record with these tags, language and licence is selected."""
        if self.whole:
            return True
        if license is not None and license in self.licenses:
            return True
        if language is not None and self.languages:
            spoken = ascii_fold(language)
            for named in self.languages:
                folded = ascii_fold(named)
                if spoken == folded or spoken.startswith(folded + "-"):
                    return True
        if not self.tags or not tags:
            return False
        held = {ascii_fold(tag) for tag in self.tags}
        return any(ascii_fold(tag) in held for tag in tags)


class JointRules(msgspec.Struct, frozen=True):
    """What the joint actions binding ONE co-op demand now (empty: nothing)."""

    freeze: bool = False
    embargoes: tuple[JointSelector, ...] = ()
    eval_only_since: int | None = None  # earliest start of a binding eval-only action
    ai_use: str | None = None  # the preference shift in force (the first binding one by id)
    monthly_records: int | None = None  # the smallest binding volume cap
    actions: tuple[str, ...] = ()  # ids of the binding actions (for messages)

    def covers(
        self, *, tags: tuple[str, ...] | list[str], language: str | None, license: License | str | None
    ) -> bool:
        """Whether a binding joint embargo holds a record with these tags, language and licence."""
        return any(s.covers(tags=tags, language=language, license=license) for s in self.embargoes)

    def __bool__(self) -> bool:
        return (
            self.freeze
            or bool(self.embargoes)
            or self.eval_only_since is not None
            or self.ai_use is not None
            or self.monthly_records is not None
        )
