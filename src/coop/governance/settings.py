"""The co-op's collective settings: typed, versioned, changed only by recorded decisions.

Settings are one frozen Struct with a section per *setting class* (defaults,
embargo, quality freeze, volume cap, payout split, eval policy, decision
rules).  A change names dotted paths (``embargo.on``, ``defaults.license``)
or whole sections; :func:`apply_changes` validates the result and names the
offending path on failure.  The decision rules say per class whether an
admin may change it alone or a vote is needed, and with what quorum and
threshold.

Defaults apply to a contribution when it is made, never retroactively: a
record keeps the values it was stored with.
"""

from __future__ import annotations

import enum
import re
import string
from typing import Any, Final

import msgspec

from coop.governance.aipref import parse_ai_use
from coop.governance.canonical import canonical_bytes, sha256_hex
from coop.governance.errors import InvalidValueError
from coop.governance.payouts import PayoutSplit
from coop.governance.record import AttributionMode, EvalConsent, License, Scope

__all__ = [
    "DEFAULT_TERMS",
    "Access",
    "Approval",
    "DecisionRules",
    "Defaults",
    "Embargo",
    "EvalPolicy",
    "NoiseKind",
    "Publication",
    "Rule",
    "SettingClass",
    "Settings",
    "VolumeCap",
    "apply_changes",
    "changed_classes",
    "settings_digest",
]

_BCP47: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class SettingClass(enum.StrEnum):
    DEFAULTS = "defaults"
    EMBARGO = "embargo"
    QUALITY_FREEZE = "quality_freeze"
    VOLUME_CAP = "volume_cap"
    PAYOUT = "payout"
    EVAL_POLICY = "eval_policy"
    RULES = "rules"
    ACCESS = "access"


class Defaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a contribution gets for every choice its member leaves open."""

    license: License = License.CC_BY_SA
    ai_use: str = "train-ai=y, search=y"
    eval: EvalConsent = EvalConsent.YES
    scope: Scope = Scope.PUBLIC
    attribution: AttributionMode = AttributionMode.PSEUDONYM

    def __post_init__(self) -> None:
        parse_ai_use(self.ai_use, field="defaults.ai_use")


_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_fold(text: str) -> str:
    """``text`` with ASCII letters in lower case (what SQLite's ``lower()`` does)."""
    return text.translate(_ASCII_LOWER)


class Embargo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """While on, matching records stay out of new releases and mirrors; nothing is deleted.

    With neither tags nor languages it covers the whole co-op.
    """

    on: bool = False
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for index, language in enumerate(self.languages):
            if not _BCP47.match(language):
                raise InvalidValueError(
                    f"{language!r} is not a language tag", field=f"embargo.languages[{index}]"
                )

    @property
    def whole(self) -> bool:
        return self.on and not self.tags and not self.languages

    def covers(self, *, tags: tuple[str, ...] | list[str], language: str | None) -> bool:
        """Whether the embargo holds a record with these tags and language.

        Tags compare without ASCII case (``Tax`` is ``tax``); a language covers its regional
        forms (``id`` covers ``id-ID`` and ``ID``), as BCP 47 tags compare.  The node's SQL
        forms of this rule (``coop.node.policy.embargo_sql``) are held equal to it by a test.
        """
        if not self.on:
            return False
        if self.whole:
            return True
        if language is not None:
            spoken = ascii_fold(language)
            for embargoed in self.languages:
                folded = ascii_fold(embargoed)
                if spoken == folded or spoken.startswith(folded + "-"):
                    return True
        held = {ascii_fold(tag) for tag in self.tags}
        return any(ascii_fold(tag) in held for tag in tags)


class VolumeCap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``monthly_records`` records admitted by release cuts per calendar month (UTC),
    public and federation scope together (what leaves the co-op); None: no cap."""

    monthly_records: int | None = None

    def __post_init__(self) -> None:
        if self.monthly_records is not None and self.monthly_records < 0:
            raise InvalidValueError("the cap cannot be below zero", field="volume_cap.monthly_records")


class Approval(enum.StrEnum):
    AUTO = "auto"
    ADMIN = "admin"


class NoiseKind(enum.StrEnum):
    NONE = "none"
    GAUSSIAN = "gaussian"
    LAPLACE = "laplace"


class Publication(enum.StrEnum):
    """What this co-op lets others show of ITS numbers in a published evaluation report."""

    NONE = "none"  # nothing: the co-op appears as "a co-op (not named)"
    AGGREGATE = "aggregate"  # only inside an aggregate every answering co-op consents to
    NAMED = "named"  # its own numbers, under its name


class EvalPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How this co-op answers federated evaluation requests."""

    approval: Approval = Approval.AUTO
    requester_allowlist: tuple[str, ...] = ()  # requester public keys (hex); empty: anyone
    min_records: int = 20
    noise: NoiseKind = NoiseKind.NONE
    epsilon_milli: int = 1000  # privacy budget spent per answer, in thousandths
    budget_milli: int = 10_000  # total per requester
    publication: Publication = Publication.NONE  # stamped in every attestation this co-op signs

    def __post_init__(self) -> None:
        if self.min_records < 1:
            raise InvalidValueError("at least one record is needed", field="eval_policy.min_records")
        if self.epsilon_milli <= 0 or self.budget_milli < 0:
            raise InvalidValueError("epsilon and budget must be positive", field="eval_policy.epsilon_milli")
        for index, key in enumerate(self.requester_allowlist):
            if not re.fullmatch(r"[0-9a-f]{64}", key):
                raise InvalidValueError(
                    "a requester key is 64 lowercase hex digits",
                    field=f"eval_policy.requester_allowlist[{index}]",
                )


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one class of settings is changed."""

    admin_alone: bool
    quorum_percent: int = 50  # share of the electorate that must vote (yes, no or abstain)
    threshold_percent: int = 50  # yes must be more than this share of yes + no
    voting_days: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.quorum_percent <= 100 or not 0 <= self.threshold_percent < 100:
            raise InvalidValueError("quorum is 0..100 and threshold 0..99 percent", field="rules")
        if not 1 <= self.voting_days <= 365:
            raise InvalidValueError("voting lasts 1 to 365 days", field="rules")


DEFAULT_TERMS: Final = (
    "No re-identification: do not try to find out who contributed a record, nor link records to people.",
    "Honour each record's licence and its AI-use preferences (for example train-ai=n).",
)


class Access(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gated access: which licence buckets only grantees may download, and on what terms."""

    gated: tuple[str, ...] = ()  # licence buckets (License values) that are gated
    terms: tuple[str, ...] = DEFAULT_TERMS
    conditions: tuple[str, ...] = ()  # the co-op's own, e.g. "training allowed only for open-weight models"
    open_weights_only: bool = False  # refuse requests for closed-weight models at request time
    grant_days: int = 90
    url_seconds: int = 300  # a signed URL's lifetime
    downloads_per_hour: int = 60  # per grantee
    mirror_gated: bool = False  # federation peers may mirror gated records

    def __post_init__(self) -> None:
        known = {lic.value for lic in License}
        for index, bucket in enumerate(self.gated):
            if bucket not in known:
                raise InvalidValueError(
                    f"{bucket!r} is not a licence; buckets are: {', '.join(sorted(known))}",
                    field=f"access.gated[{index}]",
                )
        if len(set(self.gated)) != len(self.gated):
            raise InvalidValueError("a bucket is named twice", field="access.gated")
        for name, texts in (("terms", self.terms), ("conditions", self.conditions)):
            if len(texts) > 20:
                raise InvalidValueError("at most 20 of them", field=f"access.{name}")
            for index, text in enumerate(texts):
                if not text.strip() or len(text) > 500:
                    raise InvalidValueError("1 to 500 characters each", field=f"access.{name}[{index}]")
        for name, value, low, high in (
            ("grant_days", self.grant_days, 1, 365),
            ("url_seconds", self.url_seconds, 5, 3600),
            ("downloads_per_hour", self.downloads_per_hour, 1, 10_000),
        ):
            if not low <= value <= high:
                raise InvalidValueError(f"{name} is {low} to {high}", field=f"access.{name}")


def _default_rules() -> dict[str, Rule]:
    # The emergency switches are an admin's to flip at 2 a.m.; money, caps and the rules need a vote.
    return {
        SettingClass.DEFAULTS.value: Rule(admin_alone=False),
        SettingClass.EMBARGO.value: Rule(admin_alone=True),
        SettingClass.QUALITY_FREEZE.value: Rule(admin_alone=True),
        SettingClass.VOLUME_CAP.value: Rule(admin_alone=False),
        SettingClass.PAYOUT.value: Rule(admin_alone=False, threshold_percent=60),
        SettingClass.EVAL_POLICY.value: Rule(admin_alone=True),
        SettingClass.RULES.value: Rule(admin_alone=False, quorum_percent=60, threshold_percent=66),
        SettingClass.ACCESS.value: Rule(admin_alone=True),
    }


class DecisionRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    classes: dict[str, Rule] = msgspec.field(default_factory=_default_rules)

    def __post_init__(self) -> None:
        known = {c.value for c in SettingClass}
        unknown = set(self.classes) - known
        if unknown:
            raise InvalidValueError(f"unknown setting class {sorted(unknown)[0]!r}", field="rules.classes")
        # Settings stored before a class existed (an upgraded node) lack its rule: it takes the
        # default rule, so old settings still decode (their stored digest is kept as stored).
        defaults = _default_rules()
        for name in sorted(known - set(self.classes)):
            self.classes[name] = defaults[name]

    def rule(self, cls: SettingClass) -> Rule:
        found = self.classes.get(cls.value)
        return found if found is not None else _default_rules()[cls.value]

    def combined(self, classes: set[SettingClass]) -> Rule:
        """The strictest rule over several classes (one proposal may touch more than one)."""
        rules = [self.rule(c) for c in classes]
        return Rule(
            admin_alone=all(r.admin_alone for r in rules),
            quorum_percent=max(r.quorum_percent for r in rules),
            threshold_percent=max(r.threshold_percent for r in rules),
            voting_days=max(r.voting_days for r in rules),
        )


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    defaults: Defaults = Defaults()
    embargo: Embargo = Embargo()
    quality_freeze: bool = False
    volume_cap: VolumeCap = VolumeCap()
    payout: PayoutSplit = PayoutSplit()
    eval_policy: EvalPolicy = EvalPolicy()
    rules: DecisionRules = DecisionRules()
    access: Access = Access()


def settings_digest(settings: Settings) -> str:
    return sha256_hex(canonical_bytes(settings))


def changed_classes(changes: dict[str, Any]) -> set[SettingClass]:
    classes = set()
    for path in changes:
        head = path.split(".", 1)[0]
        try:
            classes.add(SettingClass(head))
        except ValueError:
            raise InvalidValueError(
                f"unknown setting {path!r}; settings are: {', '.join(c.value for c in SettingClass)}",
                field=path,
            ) from None
    if not classes:
        raise InvalidValueError("no setting named", field="changes")
    return classes


def apply_changes(settings: Settings, changes: dict[str, Any]) -> Settings:
    """``settings`` with each dotted path set to its value; validated as a whole."""
    changed_classes(changes)
    data: dict[str, Any] = msgspec.to_builtins(settings)
    for path, value in changes.items():
        parts = path.split(".")
        target: Any = data
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(target, dict) or part not in target:
                raise InvalidValueError(f"unknown setting {'.'.join(parts[: depth + 1])!r}", field=path)
            target = target[part]
        leaf = parts[-1]
        # A dict section that is a map (rules.classes, payout.weights) accepts new keys only
        # where validation will check them; elsewhere the key must exist already.
        if not isinstance(target, dict) or (leaf not in target and path.count(".") < 2):
            raise InvalidValueError(f"unknown setting {path!r}", field=path)
        target[leaf] = value
    try:
        updated = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise InvalidValueError(_validation_message(exc), field=_validation_path(exc)) from None
    if updated.defaults.ai_use != settings.defaults.ai_use:
        # A new default is the admins' own input: a typo in it would drop every member's opt-out.
        parse_ai_use(updated.defaults.ai_use, field="defaults.ai_use", strict=True)
    return updated


def _validation_path(exc: msgspec.ValidationError) -> str:
    match = re.search(r"at `\$\.?([^`]*)`", str(exc))
    named = re.search(r"(?:required|unknown) field `([^`]+)`", str(exc))
    path = match.group(1) if match else ""
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or "settings"


def _validation_message(exc: msgspec.ValidationError) -> str:
    return re.sub(r" - at `[^`]*`$", "", str(exc))
