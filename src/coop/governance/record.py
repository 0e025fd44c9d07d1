"""The vocabulary of one contribution: the record and the types it is made of.

A record follows the minimal schema of the record-generation model (uid, type,
created_at, route, model, content, feedback, label, tags, language, license,
ai_use, attribution, contributor_hash, scope, provenance).  Every type here is
a frozen msgspec Struct or an enum, so that records compare, hash and encode
the same way everywhere.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import Final, TypeVar

import msgspec

from coop.governance.errors import InvalidValueError

__all__ = [
    "ANONYMOUS_PREFIX",
    "MAX_TAGS",
    "Attribution",
    "AttributionMode",
    "Channel",
    "Checks",
    "EvalConsent",
    "Feedback",
    "Label",
    "License",
    "Message",
    "Provenance",
    "Record",
    "Role",
    "Scope",
    "Source",
    "contributor_hash",
    "parse_attribution",
    "parse_enum",
]

MAX_TAGS: Final = 32
ANONYMOUS_PREFIX: Final = "anonymous-"

_E = TypeVar("_E", bound=enum.StrEnum)


class Label(enum.StrEnum):
    """What the member says of the chat as a whole."""

    GOOD = "good"
    FAIL = "fail"


class License(enum.StrEnum):
    """The licences a member may choose, as exact SPDX identifiers."""

    CC0 = "CC0-1.0"
    CC_BY = "CC-BY-4.0"
    CC_BY_SA = "CC-BY-SA-4.0"

    @property
    def bucket(self) -> str:
        """The release bucket (and `datasets` config name) for this licence."""
        return _BUCKETS[self]

    @property
    def share_alike(self) -> bool:
        """ShareAlike records must never be mixed with records under other licences."""
        return self is License.CC_BY_SA

    @property
    def needs_attribution(self) -> bool:
        return self is not License.CC0

    @property
    def url(self) -> str:
        return _URLS[self]

    @classmethod
    def from_bucket(cls, bucket: str) -> License:
        for licence, name in _BUCKETS.items():
            if name == bucket:
                return licence
        raise InvalidValueError(f"unknown licence bucket {bucket!r}", field="bucket")


_BUCKETS: Final = {License.CC0: "cc0", License.CC_BY: "cc-by", License.CC_BY_SA: "cc-by-sa"}
_URLS: Final = {
    License.CC0: "https://creativecommons.org/publicdomain/zero/1.0/",
    License.CC_BY: "https://creativecommons.org/licenses/by/4.0/",
    License.CC_BY_SA: "https://creativecommons.org/licenses/by-sa/4.0/",
}


class Scope(enum.StrEnum):
    """How far a record may travel."""

    NODE = "node"  # never leaves the node; usable only by federated evaluation
    FEDERATION = "federation"  # mirrored by member co-ops
    PUBLIC = "public"  # released publicly


class EvalConsent(enum.StrEnum):
    """The member's consent to federated evaluation over the record."""

    YES = "y"
    NO = "n"


class AttributionMode(enum.StrEnum):
    USERNAME = "username"
    PSEUDONYM = "pseudonym"
    ANONYMOUS = "anonymous"


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Source(enum.StrEnum):
    """Whether the member shared a chat on their own or because they were asked."""

    NATURAL = "natural"
    PROMPTED = "prompted"


class Channel(enum.StrEnum):
    """The intake route a contribution came by (the record's ``route``)."""

    API = "api"
    CLI = "cli"
    WEB = "web"
    OPENWEBUI = "openwebui"


class Attribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the contributor is credited: ``name`` is None when anonymous."""

    mode: AttributionMode
    name: str | None = None


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Role
    content: str
    model: str | None = None
    timestamp: int | None = None


class Feedback(msgspec.Struct, frozen=True, omit_defaults=True):
    """A rating on one message, as Open WebUI's ``annotation`` carries it."""

    message_index: int
    rating: int = 0  # 1 good, -1 bad, 0 none
    reason: str | None = None
    comment: str | None = None
    tags: tuple[str, ...] = ()


class Checks(msgspec.Struct, frozen=True):
    """What processing found: PII hits by type and the hash of the conversation."""

    pii: dict[str, int]
    content_sha256: str


class Provenance(msgspec.Struct, frozen=True):
    source: Source
    prompt_shown: bool
    format: str
    checks: Checks


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One released contribution, already redacted."""

    uid: str
    type: str = "chat"
    created_at: int
    route: Channel
    model: str | None
    models: tuple[str, ...] = ()
    content: tuple[Message, ...]
    feedback: tuple[Feedback, ...] = ()
    label: Label
    note: str | None = None
    correction: str | None = None
    tags: tuple[str, ...] = ()
    language: str | None = None
    license: License
    ai_use: str
    eval: EvalConsent
    attribution: Attribution
    # None for anonymous records: nothing may link them to the member's other records.
    contributor_hash: str | None = None
    scope: Scope
    provenance: Provenance


def parse_enum(kind: type[_E], value: str, *, field: str) -> _E:
    """Read an enum member by value, naming the field and the allowed values on failure."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidValueError(f"{value!r} is not one of: {allowed}", field=field) from None


def parse_attribution(value: str, *, username: str | None, field: str = "attribution") -> Attribution:
    """Read ``username``, ``pseudonym:NAME`` or ``anonymous``."""
    if value == AttributionMode.ANONYMOUS:
        return Attribution(AttributionMode.ANONYMOUS)
    if value == AttributionMode.USERNAME:
        if not username:
            raise InvalidValueError("no username is known for this contributor", field=field)
        return Attribution(AttributionMode.USERNAME, username)
    prefix = AttributionMode.PSEUDONYM.value + ":"
    if value.startswith(prefix):
        name = value[len(prefix) :].strip()
        if not name or len(name) > 64 or not name.isprintable():
            raise InvalidValueError("a pseudonym must be 1 to 64 printable characters", field=field)
        if name.lower().startswith(ANONYMOUS_PREFIX):
            # Payouts name anonymous contributors so; a pseudonym must not pass for one.
            raise InvalidValueError(f"a pseudonym may not start with {ANONYMOUS_PREFIX!r}", field=field)
        return Attribution(AttributionMode.PSEUDONYM, name)
    raise InvalidValueError(f"{value!r} is not one of: username, pseudonym:NAME, anonymous", field=field)


def contributor_hash(salt: bytes, provider: str, user_id: str) -> str:
    """HMAC-SHA256 of ``provider:user_id`` under the node's secret salt, as hex."""
    message = f"{provider}:{user_id}".encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()
