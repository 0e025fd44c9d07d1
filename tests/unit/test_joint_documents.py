"""Joint actions and statements as signed documents: forged, malformed and expired ones are refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest

from coop.federation.joint import (
    ACTION_PAYLOAD_TYPE,
    JointAction,
    JointError,
    JointKind,
    JointSelector,
    JointStatement,
    action_id,
    make_action,
    make_statement,
    open_action,
    open_statement,
)
from coop.governance import License, canonical_bytes, sha256_hex
from coop.governance.envelope import seal
from coop.governance.signing import Signer

SIGNERS = [Signer(bytes([i + 11]) * 32) for i in range(4)]
IDS = [s.public_key.hex() for s in SIGNERS]
KEYS = {i: i for i in IDS}  # node id = its original key
NOW = 1_700_000_000
DAY = 86_400


def action(**changes: object) -> JointAction:
    fields: dict[str, object] = {
        "proposer": IDS[0],
        "kind": JointKind.EMBARGO,
        "selector": JointSelector(tags=("tax",)),
        "reason": "Fair terms first",
        "starts_at": NOW,
        "ends_at": NOW + 30 * DAY,
        "threshold": 2,
        "coops": tuple(sorted(IDS[:3])),
        "created_at": NOW,
        "nonce": "0" * 32,
    }
    fields.update(changes)
    return JointAction(**fields)  # type: ignore[arg-type]


def test_action_round_trip_opens_with_the_proposers_key() -> None:
    data = make_action(action(), SIGNERS[0])
    opened = open_action(data, KEYS, now=NOW)
    payload = base64.b64decode(json.loads(data)["payload"])
    assert opened.id == action_id(payload) == sha256_hex(payload)
    assert opened.action == action() and opened.envelope == data


@pytest.mark.parametrize(
    ("signer", "keys"),
    [
        pytest.param(1, KEYS, id="signed-by-another-named-coop"),
        pytest.param(3, KEYS, id="signed-by-a-stranger"),
        pytest.param(0, {IDS[0]: IDS[1]}, id="verifier-knows-another-key-for-the-proposer"),
        pytest.param(0, {}, id="proposer-unknown-to-verifier"),
    ],
)
def test_open_action_forged_signature_refused(signer: int, keys: dict[str, str]) -> None:
    data = make_action(action(), SIGNERS[signer])
    with pytest.raises(JointError) as err:
        open_action(data, keys, now=NOW)
    assert err.value.field == "signature"


def test_open_action_proposer_not_named_refused_even_when_signed() -> None:
    bad = action(proposer=IDS[3])
    with pytest.raises(JointError) as err:
        make_action(bad, SIGNERS[3])
    assert err.value.field == "proposer"
    forged = seal(canonical_bytes(bad), ACTION_PAYLOAD_TYPE, [SIGNERS[3]])
    with pytest.raises(JointError) as err:
        open_action(forged, KEYS, now=NOW)
    assert err.value.field == "proposer"


def test_open_action_expired_refused() -> None:
    data = make_action(action(), SIGNERS[0])
    assert open_action(data, KEYS, now=NOW + 30 * DAY - 1)
    with pytest.raises(JointError) as err:
        open_action(data, KEYS, now=NOW + 30 * DAY)
    assert err.value.field == "ends_at"


def test_open_action_non_canonical_payload_refused() -> None:
    payload = json.dumps(msgspec.to_builtins(action()), indent=1).encode()
    data = seal(payload, ACTION_PAYLOAD_TYPE, [SIGNERS[0]])
    with pytest.raises(JointError) as err:
        open_action(data, KEYS, now=NOW)
    assert err.value.field == "payload"


def test_open_action_over_8_kib_refused() -> None:
    data = make_action(action(reason="x" * 2000), SIGNERS[0])
    padded = data[:-1] + b" " * 9000 + b"}"
    with pytest.raises(JointError) as err:
        open_action(padded, KEYS, now=NOW)
    assert err.value.field == "size"


def test_open_action_unknown_field_refused() -> None:
    builtins = msgspec.to_builtins(action())
    builtins["extra"] = 1
    data = seal(canonical_bytes(builtins), ACTION_PAYLOAD_TYPE, [SIGNERS[0]])
    with pytest.raises(JointError) as err:
        open_action(data, KEYS, now=NOW)
    assert err.value.field == "payload"


BAD_ACTIONS = [
    ("freeze-with-selector", {"kind": JointKind.FREEZE}, "selector"),
    ("preference-without-ai-use", {"kind": JointKind.PREFERENCE, "selector": JointSelector()}, "ai_use"),
    (
        "preference-unknown-label",
        {"kind": JointKind.PREFERENCE, "selector": JointSelector(), "ai_use": "train-aj=n"},
        "ai_use",
    ),
    ("ai-use-on-embargo", {"ai_use": "train-ai=n"}, "ai_use"),
    ("cap-without-number", {"kind": JointKind.VOLUME_CAP, "selector": JointSelector()}, "monthly_records"),
    ("number-on-embargo", {"monthly_records": 5}, "monthly_records"),
    (
        "negative-cap",
        {"kind": JointKind.VOLUME_CAP, "selector": JointSelector(), "monthly_records": -1},
        "monthly_records",
    ),
    ("no-end-nor-review", {"ends_at": None}, "ends_at"),
    ("end-before-start", {"ends_at": NOW}, "ends_at"),
    ("end-past-366-days", {"ends_at": NOW + 367 * DAY}, "ends_at"),
    ("review-past-366-days", {"review_at": NOW + 367 * DAY}, "review_at"),
    ("start-long-before-making", {"starts_at": NOW - 2 * DAY}, "starts_at"),
    ("threshold-zero", {"threshold": 0}, "threshold"),
    ("threshold-over-n", {"threshold": 4}, "threshold"),
    ("coops-unsorted", {"coops": tuple(sorted(IDS[:3], reverse=True))}, "coops"),
    ("coops-repeated", {"coops": (IDS[0], IDS[0])}, "coops"),
    ("coop-not-hex", {"coops": tuple(sorted([IDS[0], "x" * 64]))}, "coops"),
    ("reason-empty", {"reason": ""}, "reason"),
    ("reason-control-char", {"reason": "a\nb"}, "reason"),
    ("reason-too-long", {"reason": "a" * 2001}, "reason"),
    ("nonce-short", {"nonce": "ab"}, "nonce"),
    ("federation-bad", {"federation": "zz"}, "federation"),
    ("tag-repeated", {"selector": JointSelector(tags=("a", "a"))}, "selector.tags"),
    (
        "licence-repeated",
        {"selector": JointSelector(licenses=(License.CC0, License.CC0))},
        "selector.licenses",
    ),
]


@pytest.mark.parametrize(("changes", "field"), [pytest.param(c, f, id=n) for n, c, f in BAD_ACTIONS])
def test_make_action_bad_content_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(JointError) as err:
        make_action(action(**changes), SIGNERS[0])
    assert err.value.field == field


def test_open_action_bad_language_refused() -> None:
    builtins = msgspec.to_builtins(action())
    builtins["selector"] = {"languages": ["not a tag"]}
    data = seal(canonical_bytes(builtins), ACTION_PAYLOAD_TYPE, [SIGNERS[0]])
    with pytest.raises(JointError) as err:
        open_action(data, KEYS, now=NOW)
    assert err.value.field == "selector.languages[0]"


def test_other_kinds_are_accepted() -> None:
    plain = {"selector": JointSelector()}
    for changes in (
        {"kind": JointKind.FREEZE, **plain},
        {"kind": JointKind.EVAL_ONLY, **plain, "ends_at": None, "review_at": NOW + DAY},
        {"kind": JointKind.PREFERENCE, **plain, "ai_use": "train-ai=n", "condition": "until fair terms"},
        {"kind": JointKind.VOLUME_CAP, **plain, "monthly_records": 0},
    ):
        assert open_action(make_action(action(**changes), SIGNERS[0]), KEYS, now=NOW).action.kind


def statement(opened_id: str, coop: int = 1, **changes: object) -> JointStatement:
    fields: dict[str, object] = {
        "action": opened_id,
        "coop": IDS[coop],
        "decision": "sign",
        "at": NOW,
        "via": "admin",
    }
    fields.update(changes)
    return JointStatement(**fields)  # type: ignore[arg-type]


def test_statement_round_trip_opens_with_the_coops_key() -> None:
    opened = open_action(make_action(action(), SIGNERS[0]), KEYS, now=NOW)
    data = make_statement(statement(opened.id, via="vote 12"), SIGNERS[1])
    got = open_statement(data, opened, KEYS)
    assert (got.action, got.coop, got.decision, got.at, got.via) == (
        opened.id,
        IDS[1],
        "sign",
        NOW,
        "vote 12",
    )
    assert got.envelope == data


@pytest.mark.parametrize(
    ("coop", "signer", "changes", "field"),
    [
        pytest.param(1, 2, {}, "signature", id="signed-by-another-coop"),
        pytest.param(3, 3, {}, "coop", id="coop-not-named"),
        pytest.param(1, 1, {"action": "f" * 64}, "action", id="about-another-action"),
        pytest.param(1, 1, {"at": NOW - 2 * DAY}, "at", id="before-the-action"),
    ],
)
def test_open_statement_refused(coop: int, signer: int, changes: dict[str, object], field: str) -> None:
    opened = open_action(make_action(action(), SIGNERS[0]), KEYS, now=NOW)
    data = make_statement(statement(opened.id, coop, **changes), SIGNERS[signer])
    with pytest.raises(JointError) as err:
        open_statement(data, opened, KEYS)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"via": "alice"}, "via"),
        ({"via": "vote 0"}, "via"),
        ({"action": "A" * 64}, "action"),
        ({"at": 0}, "at"),
    ],
)
def test_make_statement_bad_content_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(JointError) as err:
        make_statement(statement("a" * 64, **changes), SIGNERS[1])
    assert err.value.field == field


def test_open_statement_decision_outside_vocabulary_refused() -> None:
    opened = open_action(make_action(action(), SIGNERS[0]), KEYS, now=NOW)
    builtins = msgspec.to_builtins(statement(opened.id))
    builtins["decision"] = "veto"
    data = seal(canonical_bytes(builtins), "application/vnd.coop-flywheel.joint-statement+json", [SIGNERS[1]])
    with pytest.raises(JointError) as err:
        open_statement(data, opened, KEYS)
    assert err.value.field == "payload"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        pytest.param(
            {"kind": JointKind.VOLUME_CAP, "selector": JointSelector(), "monthly_records": 2**53},
            "monthly_records",
            "the cap is a whole number from 0 to 9007199254740991",
            id="cap-over-2^53-1",
        ),
        pytest.param(
            {"starts_at": NOW + 10 * DAY, "ends_at": NOW + 5 * DAY},
            "ends_at",
            "the end date is before the start",
            id="end-before-start",
        ),
        pytest.param({"ends_at": NOW - DAY}, "ends_at", "the end date has passed", id="end-passed"),
        pytest.param(
            {"starts_at": NOW + 367 * DAY, "ends_at": NOW + 368 * DAY},
            "starts_at",
            "an action starts within 366 days after it is made",
            id="start-over-366-days-after-making",
        ),
    ],
)
def test_action_content_messages_say_what_is_wrong(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(JointError) as err:
        make_action(action(**changes), SIGNERS[0])
    assert (err.value.field, err.value.message) == (field, message)


def test_a_forged_signature_is_an_unverified_error() -> None:
    from coop.federation.joint import UnverifiedError

    with pytest.raises(UnverifiedError):
        open_action(make_action(action(), SIGNERS[1]), KEYS, now=NOW)
    opened = open_action(make_action(action(), SIGNERS[0]), KEYS, now=NOW)
    with pytest.raises(UnverifiedError):
        open_statement(make_statement(statement(opened.id, 1), SIGNERS[2]), opened, KEYS)
