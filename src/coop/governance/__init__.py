"""The pure core: the vocabulary of a contribution, collective settings and canonical bytes.

No I/O here and no imports of other Co-op Flywheel packages.
"""

from coop.governance.aipref import (
    CC_SIGNALS,
    LEGACY_LABELS,
    AiUse,
    ParsedAiUse,
    Preference,
    UsageLabel,
    parse_ai_use,
)
from coop.governance.canonical import MAX_SAFE_INTEGER, canonical_bytes, sha256_hex
from coop.governance.errors import (
    AiPrefSyntaxError,
    GovernanceError,
    InvalidValueError,
    PolicyError,
)
from coop.governance.record import (
    MAX_TAGS,
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    EvalConsent,
    Feedback,
    Label,
    License,
    Message,
    Provenance,
    Record,
    Role,
    Scope,
    Source,
    contributor_hash,
    parse_attribution,
    parse_enum,
)
from coop.governance.settings import Defaults

__all__ = [
    "CC_SIGNALS",
    "LEGACY_LABELS",
    "MAX_SAFE_INTEGER",
    "MAX_TAGS",
    "AiPrefSyntaxError",
    "AiUse",
    "Attribution",
    "AttributionMode",
    "Channel",
    "Checks",
    "Defaults",
    "EvalConsent",
    "Feedback",
    "GovernanceError",
    "InvalidValueError",
    "Label",
    "License",
    "Message",
    "ParsedAiUse",
    "PolicyError",
    "Preference",
    "Provenance",
    "Record",
    "Role",
    "Scope",
    "Source",
    "UsageLabel",
    "canonical_bytes",
    "contributor_hash",
    "parse_ai_use",
    "parse_attribution",
    "parse_enum",
    "sha256_hex",
]
