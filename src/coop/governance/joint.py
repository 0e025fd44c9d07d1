"""Joint actions as the disclosure policy sees them: what co-ops acting together demand.

A joint action (a freeze, a selective embargo, evaluation-only, a preference shift, a
volume cap) is proposed and co-signed by k of n co-ops (:mod:`coop.federation.joint`).
Here is only its pure vocabulary: the kind, the selector of an embargo and
:class:`JointRules`, what the actions binding one co-op demand now.  The disclosure
policy reads the rules beside the co-op's own switches (:class:`~.disclosure.CollectiveState`).
"""

from __future__ import annotations

import enum
import functools
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
        whole, licenses, languages, held = _compiled(self)
        if whole:
            return True
        if license is not None and license in licenses:
            return True
        if language is not None and languages:
            spoken = ascii_fold(language)
            for folded in languages:
                if spoken == folded or spoken.startswith(folded + "-"):
                    return True
        if not held or not tags:
            return False
        return any(ascii_fold(tag) in held for tag in tags)


@functools.lru_cache(maxsize=1024)
def _compiled(selector: JointSelector) -> tuple[bool, frozenset[str], tuple[str, ...], frozenset[str]]:
    """A selector's names folded once (the policy asks it for every record of a cut or a page)."""
    return (
        selector.whole,
        frozenset(str(license) for license in selector.licenses),
        tuple(ascii_fold(language) for language in selector.languages),
        frozenset(ascii_fold(tag) for tag in selector.tags),
    )


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
        """Whether a binding joint embargo holds a record with these tags, language and licence.

        Any selector covering it is the union of the selectors' names (each selects by any of its
        own), folded once per set of embargoes: the policy asks this for every record it decides.
        """
        if not self.embargoes:
            return False
        whole, licenses, languages, held = _union(self.embargoes)
        if whole:
            return True
        if license is not None and license in licenses:
            return True
        if language is not None and languages:
            spoken = ascii_fold(language)
            for folded in languages:
                if spoken == folded or spoken.startswith(folded + "-"):
                    return True
        if not held or not tags:
            return False
        return any(ascii_fold(tag) in held for tag in tags)

    def __bool__(self) -> bool:
        return (
            self.freeze
            or bool(self.embargoes)
            or self.eval_only_since is not None
            or self.ai_use is not None
            or self.monthly_records is not None
        )


_Compiled = tuple[bool, frozenset[str], tuple[str, ...], frozenset[str]]
# Keyed by the embargoes tuple's identity; the tuple itself is kept beside its entry, so an id is
# never reused while its entry stands (a few entries: one per JointRules the node builds).
_UNIONS: dict[int, tuple[tuple[JointSelector, ...], _Compiled]] = {}


def _union(embargoes: tuple[JointSelector, ...]) -> _Compiled:
    hit = _UNIONS.get(id(embargoes))
    if hit is not None and hit[0] is embargoes:
        return hit[1]
    parts = [_compiled(selector) for selector in embargoes]
    compiled: _Compiled = (
        any(part[0] for part in parts),
        frozenset().union(*(part[1] for part in parts)),
        tuple(dict.fromkeys(language for part in parts for language in part[2])),
        frozenset().union(*(part[3] for part in parts)),
    )
    if len(_UNIONS) >= 64:
        _UNIONS.clear()
    _UNIONS[id(embargoes)] = (embargoes, compiled)
    return compiled
