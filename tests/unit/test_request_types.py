"""Request fields that are states decode into their types, and a wrong value is refused naming its field."""

from __future__ import annotations

import msgspec
import pytest

from coop.governance import Channel, EvalConsent, Label, License, Scope, Source
from coop.node.contributions.submission import ContributionRequest, EditRequest, IngestRequest
from coop.node.errors import InputError
from coop.node.http.problems import allowed_values, decode_body
from coop.node.intake.chat import IntakeFormat

_CONTRIBUTION = msgspec.json.Decoder(ContributionRequest)
_INGEST = msgspec.json.Decoder(IngestRequest)
_EDIT = msgspec.json.Decoder(EditRequest)


def _body(**fields: object) -> bytes:
    return msgspec.json.encode(
        {"label": "good", "consent": True, "content": "User: a\n\nAssistant: b", **fields}
    )


def test_contribution_request_choices_decode_into_their_types() -> None:
    request = decode_body(
        _CONTRIBUTION,
        _body(
            license="CC-BY-SA-4.0",
            eval="n",
            scope="node",
            attribution="pseudonym:Kite",
            channel="cli",
            source="prompted",
            format="text",
        ),
    )
    assert request.label is Label.GOOD
    assert request.license is License.CC_BY_SA
    assert request.eval is EvalConsent.NO
    assert request.scope is Scope.NODE
    assert request.channel is Channel.CLI
    assert request.source is Source.PROMPTED
    assert request.format is IntakeFormat.TEXT
    assert request.attribution == "pseudonym:Kite"


def test_contribution_request_defaults_are_the_old_wire_values() -> None:
    request = decode_body(_CONTRIBUTION, _body())
    assert request.channel is Channel.API
    assert request.source is Source.NATURAL
    encoded = msgspec.json.decode(msgspec.json.encode(request))
    assert (encoded["label"], encoded["channel"], encoded["source"]) == ("good", "api", "natural")


# (decoder, body, field, allowed values the detail must list)
REFUSED = [
    ("label", _CONTRIBUTION, _body(label="meh"), "label", "good, fail"),
    ("licence", _CONTRIBUTION, _body(license="MIT"), "license", "CC0-1.0, CC-BY-4.0, CC-BY-SA-4.0"),
    ("eval", _CONTRIBUTION, _body(eval="maybe"), "eval", "y, n"),
    ("scope", _CONTRIBUTION, _body(scope="everywhere"), "scope", "node, federation, public"),
    ("channel", _CONTRIBUTION, _body(channel="fax"), "channel", "api, cli, web"),
    ("source", _CONTRIBUTION, _body(source="dreamt"), "source", "natural, prompted"),
    (
        "ingest-scope",
        _INGEST,
        msgspec.json.encode({"user": {"id": "u1"}, "label": "good", "chat": {}, "scope": "world"}),
        "scope",
        "node, federation, public",
    ),
    ("edit-label", _EDIT, b'{"label": "ok"}', "label", "good, fail"),
    ("edit-eval", _EDIT, b'{"eval": "yes"}', "eval", "y, n"),
]


@pytest.mark.parametrize(
    ("decoder", "body", "field", "allowed"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_request_with_an_unknown_choice_is_refused_naming_the_field_and_the_choices(
    decoder: msgspec.json.Decoder[object], body: bytes, field: str, allowed: str
) -> None:
    with pytest.raises(InputError) as caught:
        decode_body(decoder, body)
    assert caught.value.field == field
    assert allowed in caught.value.message
    # The wording the web form and the README use (and the API used before the fields were typed).
    assert " is not one of: " in caught.value.message


@pytest.mark.parametrize("value", ["me", "pseudonym", "Username", ""])
def test_request_with_a_malformed_attribution_is_refused_naming_the_field(value: str) -> None:
    for decoder, body in (
        (_CONTRIBUTION, _body(attribution=value)),
        (_EDIT, msgspec.json.encode({"attribution": value})),
    ):
        with pytest.raises(InputError) as caught:
            decode_body(decoder, body)
        assert caught.value.field == "attribution"
        assert caught.value.message == f"{value!r} is not one of: username, pseudonym:NAME, anonymous"


class _Inner(msgspec.Struct):
    scope: Scope | None = None


class _Outer(msgspec.Struct):
    inner: _Inner
    labels: list[Label] = []
    name: str = ""


def test_allowed_values_walks_structs_lists_and_optionals() -> None:
    assert allowed_values(_Outer, "inner.scope") == ("node", "federation", "public")
    assert allowed_values(_Outer, "labels[3]") == ("good", "fail")
    assert allowed_values(_Outer, "name") is None
    assert allowed_values(_Outer, "nowhere.deeper") is None
