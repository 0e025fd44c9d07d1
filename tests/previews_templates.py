"""Records to preview, as a list of named templates written apart from the previews' rules.

Each template is what one record is (its licence, scope, AI-use preference, tags, language,
whether its member lets the co-op announce it, whether it was withdrawn, its catalogue title)
and whether an announcement may show it under :data:`HIDDEN_TAG`, :data:`GATED` and
:data:`JOINT_LANGUAGE` (the embargo, the gated buckets and the joint embargo of the tests).
The expectations come from design16 §5, not from the code: a test built from these lines
checks :func:`coop.node.channels.previews.previews` against them.
"""

from __future__ import annotations

from typing import Any, Final

HIDDEN_TAG: Final = "secret-project"  # the co-op's embargo covers this tag
GATED: Final = "CC-BY-SA-4.0"  # the gated licence bucket
JOINT_LANGUAGE: Final = "de"  # a joint embargo binding the co-op holds this language

# (name, what the record is, whether it may be previewed)
TEMPLATES: Final[tuple[tuple[str, dict[str, Any], bool], ...]] = (
    ("plain public record", {}, True),
    ("allows every use", {"ai_use": "train-ai=y, search=y"}, True),
    ("states no preference", {"ai_use": ""}, True),
    ("CC0 licence", {"license": "CC0-1.0"}, True),
    ("other tags", {"tags": ["cooking", "secret"]}, True),
    ("other language", {"language": "fr"}, True),
    ("multi-line title", {"title": "How do I bake bread?\nMy address is 1 Main St"}, True),
    ("very long title", {"title": "word " * 80}, True),
    ("embargoed tag", {"tags": [HIDDEN_TAG]}, False),
    ("gated licence", {"license": GATED}, False),
    ("held by a joint embargo", {"language": JOINT_LANGUAGE}, False),
    ("withdrawn", {"withdrawn": True}, False),
    ("tombstoned (rectified)", {"tombstoned": True}, False),
    ("refuses AI training", {"ai_use": "train-ai=n"}, False),
    ("refuses AI search", {"ai_use": "train-ai=y, search=n"}, False),
    ("refuses by an older label", {"ai_use": "tdm=n"}, False),
    ("refuses with a CC signal", {"ai_use": "train-ai=n;exceptions=cc-cr"}, False),
    ("member said no", {"announce": False}, False),
    ("federation scope", {"scope": "federation"}, False),
    ("node scope", {"scope": "node"}, False),
    ("not released yet", {"state": "accepted"}, False),
)
