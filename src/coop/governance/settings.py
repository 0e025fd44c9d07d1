"""Collective settings of a co-op that the intake needs: the defaults for new contributions.

The defaults apply to a contribution when it is made, never retroactively:
a record keeps the values it was stored with.
"""

from __future__ import annotations

import msgspec

from coop.governance.aipref import parse_ai_use
from coop.governance.record import AttributionMode, EvalConsent, License, Scope

__all__ = ["Defaults"]


class Defaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a contribution gets for every choice its member leaves open."""

    license: License = License.CC_BY_SA
    ai_use: str = "train-ai=y, search=y"
    eval: EvalConsent = EvalConsent.YES
    scope: Scope = Scope.PUBLIC
    attribution: AttributionMode = AttributionMode.PSEUDONYM

    def __post_init__(self) -> None:
        # The default preference must itself be valid; this raises naming the field.
        parse_ai_use(self.ai_use, field="defaults.ai_use")
