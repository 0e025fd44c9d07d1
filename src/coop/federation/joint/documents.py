"""Joint actions and statements as signed documents: make them, open and verify them.

A joint action (:class:`JointAction`) is canonical JSON in a DSSE envelope signed by the
co-op that proposes it; each named co-op's decision is a :class:`JointStatement` (``sign`` or
``end``) in its own envelope, signed by that co-op's node key.  Keys are looked up by node id
in the VERIFIER's trust (its roster or pins: ``keys`` maps node id -> key hex), never taken
from the document.  A payload that is not its content's canonical JSON is refused (one
content, one id).  Everything here is pure: callers pass ``now``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Final, Literal

import msgspec

from coop.federation.errors import JointError
from coop.governance import (
    MAX_SAFE_INTEGER,
    GovernanceError,
    JointKind,
    JointSelector,
    canonical_bytes,
    parse_ai_use,
    sha256_hex,
)
from coop.governance.envelope import Envelope, open_envelope, seal, valid_signers
from coop.governance.signing import Signer

__all__ = [
    "ACTION_PAYLOAD_TYPE",
    "ACTION_TYPE",
    "MAX_COOPS",
    "MAX_DOCUMENT_BYTES",
    "MAX_SPAN",
    "STATEMENT_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "JointAction",
    "JointStatement",
    "OpenedAction",
    "OpenedStatement",
    "UnverifiedError",
    "action_id",
    "check_action",
    "decode_action",
    "decode_statement",
    "make_action",
    "make_statement",
    "open_action",
    "open_statement",
]

ACTION_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.joint-action+json"
STATEMENT_PAYLOAD_TYPE: Final = "application/vnd.coop-flywheel.joint-statement+json"
ACTION_TYPE: Final = "coop-flywheel/joint-action/1"
STATEMENT_TYPE: Final = "coop-flywheel/joint-statement/1"
MAX_DOCUMENT_BYTES: Final = 8 * 1024
MAX_COOPS: Final = 64
MAX_SPAN: Final = (
    366 * 86_400
)  # the end and review dates lie within this of the start (and the start of the making)
MAX_SELECTED: Final = 32  # tags, languages in one selector
SKEW: Final = 86_400  # how far a co-op's clock may claim before the action was made
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_HEX32: Final = re.compile(r"^[0-9a-f]{32}$")
_VIA: Final = re.compile(r"^(admin|vote [1-9][0-9]{0,14})$")


class UnverifiedError(JointError):
    """The signature did not verify against the key this node knows for the co-op (forged, or
    its key is not known here yet).  Says nothing of the payload: another envelope of the same
    payload may verify, so it is never a reason to refuse that payload for good."""


class JointAction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What co-ops agree to do together, until an end date (or until ended), once k signed."""

    type: str = ACTION_TYPE
    federation: str | None = None  # the roster's federation id, if any
    proposer: str  # node id; one of ``coops``
    kind: JointKind
    selector: JointSelector = JointSelector()  # embargo only
    ai_use: str | None = None  # preference only (required there)
    condition: str | None = None  # preference only: in plain words, "until ..."
    monthly_records: int | None = None  # volume cap only (required there)
    reason: str
    starts_at: int
    ends_at: int | None = None  # the end date
    review_at: int | None = None  # the review date (at least one of the two)
    threshold: int  # k: how many of ``coops`` must sign before it binds the signers
    coops: tuple[str, ...]  # sorted node ids, each once
    created_at: int
    nonce: str  # 32 hex digits


class JointStatement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One named co-op's decision on an action: ``sign`` it, or ``end`` it (signers only)."""

    type: str = STATEMENT_TYPE
    action: str  # the action id
    coop: str  # who decided (node id, one of the action's coops)
    decision: Literal["sign", "end"]
    at: int  # when the co-op decided (its claim)
    via: str  # "admin" or "vote <proposal number>" (never a name)


class OpenedAction(msgspec.Struct, frozen=True):
    """An action whose content checked and whose proposer's signature verified."""

    id: str
    action: JointAction
    envelope: bytes  # as received (stored and forwarded as is)


class OpenedStatement(msgspec.Struct, frozen=True):
    """A statement whose content checked and whose co-op's signature verified."""

    action: str
    coop: str
    decision: str
    at: int
    via: str
    envelope: bytes

    @property
    def key(self) -> str:
        """What a gossip digest names it by: one statement per (action, co-op, decision)."""
        return f"{self.action}/{self.coop}/{self.decision}"


_ACTION: Final = msgspec.json.Decoder(JointAction)
_STATEMENT: Final = msgspec.json.Decoder(JointStatement)


def action_id(payload: bytes) -> str:
    """An action's id: the sha256 of its canonical payload."""
    return sha256_hex(payload)


def make_action(action: JointAction, signer: Signer) -> bytes:
    """The envelope of ``action``, signed by the proposer's node key (content checked first)."""
    check_action(action)
    return seal(canonical_bytes(action), ACTION_PAYLOAD_TYPE, [signer])


def make_statement(statement: JointStatement, signer: Signer) -> bytes:
    """The envelope of one co-op's decision, signed by its node key."""
    _check_statement(statement)
    return seal(canonical_bytes(statement), STATEMENT_PAYLOAD_TYPE, [signer])


def open_action(data: bytes, keys: Mapping[str, str], *, now: int) -> OpenedAction:
    """Verify an action envelope: well formed, canonical, signed by its proposer's key (as
    ``keys`` knows it: node id -> key hex) and not expired at ``now``; :class:`JointError` if not."""
    opened, envelope, payload = decode_action(data)
    if not _signed(envelope, payload, keys.get(opened.action.proposer)):
        raise UnverifiedError(
            "the action is not signed by the key of the co-op that proposes it", field="signature"
        )
    ends_at = opened.action.ends_at
    if ends_at is not None and ends_at <= now:
        raise JointError("the end date has passed", field="ends_at")
    return opened


def open_statement(data: bytes, action: OpenedAction, keys: Mapping[str, str]) -> OpenedStatement:
    """Verify a statement on ``action``: well formed, canonical, by one of its co-ops, signed by
    that co-op's key (as ``keys`` knows it); :class:`JointError` if not."""
    opened, envelope, payload = decode_statement(data)
    if opened.action != action.id:
        raise JointError("the statement is about another action", field="action")
    if opened.coop not in action.action.coops:
        raise JointError("the co-op is not one the action names", field="coop")
    if opened.at < action.action.created_at - SKEW:
        raise JointError("the statement claims a time before the action was made", field="at")
    if not _signed(envelope, payload, keys.get(opened.coop)):
        raise UnverifiedError(
            "the statement is not signed by the key of the co-op it names", field="signature"
        )
    return opened


def decode_action(data: bytes) -> tuple[OpenedAction, Envelope, bytes]:
    """An action's envelope and payload, content checked; its signature NOT verified (for
    re-reading what this node stored after verifying it)."""
    envelope, payload = _open(data, ACTION_PAYLOAD_TYPE)
    try:
        action = _ACTION.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise JointError(f"payload is not a joint action: {exc}", field="payload") from None
    except GovernanceError as exc:
        raise JointError(exc.message, field=exc.field) from None
    check_action(action)
    if _canonical(action) != payload:
        raise JointError("the payload is not the action's canonical JSON (RFC 8785)", field="payload")
    return OpenedAction(id=action_id(payload), action=action, envelope=data), envelope, payload


def decode_statement(data: bytes) -> tuple[OpenedStatement, Envelope, bytes]:
    """A statement's envelope and payload, content checked; its signature NOT verified."""
    envelope, payload = _open(data, STATEMENT_PAYLOAD_TYPE)
    try:
        statement = _STATEMENT.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise JointError(f"payload is not a joint statement: {exc}", field="payload") from None
    _check_statement(statement)
    if _canonical(statement) != payload:
        raise JointError("the payload is not the statement's canonical JSON (RFC 8785)", field="payload")
    opened = OpenedStatement(
        action=statement.action,
        coop=statement.coop,
        decision=statement.decision,
        at=statement.at,
        via=statement.via,
        envelope=data,
    )
    return opened, envelope, payload


def _canonical(value: JointAction | JointStatement) -> bytes:
    try:
        return canonical_bytes(value)
    except GovernanceError as exc:
        raise JointError(exc.message, field=exc.field) from None


def _open(data: bytes, payload_type: str) -> tuple[Envelope, bytes]:
    try:
        return open_envelope(data, payload_type=payload_type, max_bytes=MAX_DOCUMENT_BYTES)
    except GovernanceError as exc:
        raise JointError(exc.message, field=exc.field) from None


def _signed(envelope: Envelope, payload: bytes, key: str | None) -> bool:
    if key is None or not _HEX64.match(key):
        return False
    return key in valid_signers(envelope, payload, {key: bytes.fromhex(key)})


def _printable(text: str) -> bool:
    """No control or format characters (shown on terminals and pages, one line)."""
    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def _time(value: int | None, field: str) -> None:
    if value is not None and not 0 < value <= MAX_SAFE_INTEGER:
        raise JointError(f"{value} is not a time", field=field)


def check_action(action: JointAction) -> None:
    """Refuse an action whose content breaks the rules (:class:`JointError` naming the field)."""
    if action.type != ACTION_TYPE:
        raise JointError(f"unknown joint action type {action.type!r}", field="type")
    if action.federation is not None and not _HEX32.match(action.federation):
        raise JointError("a federation id is 32 lowercase hex digits", field="federation")
    coops = action.coops
    if not 0 < len(coops) <= MAX_COOPS or any(not _HEX64.match(c) for c in coops):
        raise JointError(f"an action names 1 to {MAX_COOPS} co-ops by node id (64 hex)", field="coops")
    if list(coops) != sorted(set(coops)):
        raise JointError("the co-ops are sorted, each once", field="coops")
    if action.proposer not in coops:
        raise JointError("the proposer must be one of the co-ops named", field="proposer")
    if not 1 <= action.threshold <= len(coops):
        raise JointError(f"the threshold is between 1 and {len(coops)}", field="threshold")
    if not 0 < len(action.reason) <= 2000 or not _printable(action.reason):
        raise JointError("a reason is 1 to 2000 printable characters", field="reason")
    if not _HEX32.match(action.nonce):
        raise JointError("a nonce is 32 lowercase hex digits", field="nonce")
    for name in ("starts_at", "ends_at", "review_at", "created_at"):
        _time(getattr(action, name), name)
    if action.ends_at is None and action.review_at is None:
        raise JointError("an action has an end date or a review date", field="ends_at")
    if action.ends_at is not None and action.ends_at <= action.created_at:
        raise JointError("the end date has passed", field="ends_at")
    for name, words in (("ends_at", "end date"), ("review_at", "review date")):
        when = getattr(action, name)
        if when is not None and when <= action.starts_at:
            raise JointError(f"the {words} is before the start", field=name)
        if when is not None and when > action.starts_at + MAX_SPAN:
            raise JointError(f"the {words} lies within 366 days after the start", field=name)
    if action.starts_at < action.created_at - SKEW:
        raise JointError("an action cannot start before it was made (past licences stay)", field="starts_at")
    if action.starts_at > action.created_at + MAX_SPAN:
        raise JointError("an action starts within 366 days after it is made", field="starts_at")
    _check_kind(action)


def _check_kind(action: JointAction) -> None:
    kind = action.kind
    if kind is not JointKind.EMBARGO and action.selector != JointSelector():
        raise JointError("only an embargo selects records", field="selector")
    if kind is not JointKind.PREFERENCE and (action.ai_use is not None or action.condition is not None):
        raise JointError("only a preference shift sets ai_use and a condition", field="ai_use")
    if (kind is JointKind.VOLUME_CAP) != (action.monthly_records is not None):
        raise JointError("a volume cap, and only it, sets monthly_records", field="monthly_records")
    if action.monthly_records is not None and not 0 <= action.monthly_records <= MAX_SAFE_INTEGER:
        raise JointError(f"the cap is a whole number from 0 to {MAX_SAFE_INTEGER}", field="monthly_records")
    if kind is JointKind.PREFERENCE:
        if action.ai_use is None:
            raise JointError("a preference shift names the AI-use preference", field="ai_use")
        try:
            parse_ai_use(action.ai_use, field="ai_use", strict=True)
        except GovernanceError as exc:
            raise JointError(exc.message, field="ai_use") from None
    if action.condition is not None and (
        not 0 < len(action.condition) <= 500 or not _printable(action.condition)
    ):
        raise JointError("a condition is 1 to 500 printable characters", field="condition")
    selector = action.selector
    for name, values in (("tags", selector.tags), ("languages", selector.languages)):
        if len(values) > MAX_SELECTED or len(set(values)) != len(values):
            raise JointError(
                f"a selector names up to {MAX_SELECTED} {name}, each once", field=f"selector.{name}"
            )
        if any(not 0 < len(v) <= 64 or not _printable(v) for v in values):
            raise JointError(f"selector {name} are 1 to 64 printable characters", field=f"selector.{name}")
    if len(set(selector.licenses)) != len(selector.licenses):
        raise JointError("a selector names each licence once", field="selector.licenses")


def _check_statement(statement: JointStatement) -> None:
    if statement.type != STATEMENT_TYPE:
        raise JointError(f"unknown joint statement type {statement.type!r}", field="type")
    if not _HEX64.match(statement.action):
        raise JointError("an action id is 64 lowercase hex digits", field="action")
    if not _HEX64.match(statement.coop):
        raise JointError("a co-op is named by its node id (64 hex)", field="coop")
    _time(statement.at, "at")
    if not _VIA.match(statement.via):
        raise JointError('via is "admin" or "vote <proposal number>"', field="via")
