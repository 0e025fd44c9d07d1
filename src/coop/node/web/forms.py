"""The contribute form: its values, the choices it explains, and the preview of what gets replaced.

The form posts plain fields (it works without JavaScript); this module turns
them into the same :class:`ContributionRequest` the API takes, so the web
page, the CLI and the API share one validation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Final

import msgspec

from coop.governance import Channel, Defaults, EvalConsent, Label, License, Scope
from coop.node.contributions.submission import ContributionRequest, parse_choice
from coop.node.errors import InputError
from coop.node.intake.chat import ParsedChat
from coop.node.web.render import highlight

__all__ = [
    "AI_CHOICES",
    "LICENCES",
    "SCOPES",
    "ContributeForm",
    "FieldError",
    "Preview",
    "field_errors",
    "preview_chat",
]

LICENCES: Final = (
    (
        License.CC0.value,
        "CC0 1.0 (public domain)",
        "Anyone may reuse it for anything, without naming you.",
    ),
    (
        License.CC_BY.value,
        "CC BY 4.0",
        "Anyone may reuse it if they credit you, by the name you choose below.",
    ),
    (
        License.CC_BY_SA.value,
        "CC BY-SA 4.0 (ShareAlike)",
        "Anyone may reuse it if they credit you and share what they make from it under this same "
        "licence; it is never mixed with data under other licences.",
    ),
)

AI_CHOICES: Final = (
    (
        "train-ai=y, search=y",
        "Any AI use",
        "AI developers may train models on it, and AI search may find and quote it.",
    ),
    (
        "search=y, train-ai=n",
        "No AI training (train-ai=n)",
        "Asks AI developers not to train models on it; AI search may still find and quote it.",
    ),
    (
        "search=y, train-ai=n;exceptions=cc-cr",
        "No AI training unless they credit us (a Creative Commons signal, cc-cr)",
        "Asks AI developers not to train on it unless they give credit as the Creative Commons "
        "'Credit' signal asks; the signal is a request that travels with the data, not a licence term.",
    ),
    (
        "search=n, train-ai=n",
        "No AI use",
        "Asks that it be used neither to train AI models nor by AI search; people may still read and "
        "reuse it under its licence.",
    ),
)

SCOPES: Final = (
    (
        "node",
        "Only this co-op",
        "It never leaves this node: the co-op's admins see it, and a federated evaluation you consent to"
        " may score it, returning only numbers.",
    ),
    (
        "federation",
        "Partner co-ops too",
        "Once one of our release cuts admits it (never during an embargo or quality freeze), it goes to the"
        " co-ops this co-op has pinned as its peers, and only to them: they may keep a copy but never publish"
        " it or pass it to anyone outside that list.",
    ),
    (
        "public",
        "Published",
        "Once one of our release cuts admits it, it is in the co-op's public release files and dataset"
        " browser, and partner co-ops may republish it in their federated releases.",
    ),
)

# Where each problem field is on the page, and what the member calls it.
_ANCHORS: Final = {
    "content": ("text", "The conversation"),
    "chat_id": ("text", "The chat you picked"),
    "export": ("export", "The export file"),
    "label": ("f-label", "Good or fail"),
    "license": ("f-license", "Licence"),
    "ai_use": ("f-ai_use", "AI use"),
    "eval": ("f-eval", "Federated evaluation"),
    "scope": ("f-scope", "How far it may travel"),
    "attribution": ("f-attribution", "How you are credited"),
    "consent": ("consent", "Consent"),
    "terms_version": ("consent", "Terms"),
    "note": ("note", "Note"),
    "correction": ("correction", "The right answer"),
    "tags": ("tags", "Tags"),
    "language": ("language", "Language"),
    "csrf": ("main", "The form"),
    "body": ("main", "The form"),
}
_ROOT: Final = re.compile(r"^[A-Za-z_]+")


class FieldError(msgspec.Struct, frozen=True):
    field: str | None
    anchor: str
    label: str
    detail: str


def field_errors(field: str | None, detail: str) -> tuple[list[FieldError], defaultdict[str, bool]]:
    """One problem as the page shows it: a link to the field, and the field marked invalid."""
    marked: defaultdict[str, bool] = defaultdict(bool)
    if field is None:
        return [FieldError(None, "main", "", detail)], marked
    match = _ROOT.match(field)
    root = match.group(0) if match else field
    anchor, label = _ANCHORS.get(root, ("main", field))
    marked[root] = True
    return [FieldError(field, anchor, label, detail)], marked


class ContributeForm(msgspec.Struct, kw_only=True):
    """Every value the form shows and posts back (text as typed)."""

    text: str = ""
    label: str = ""
    correction: str = ""
    note: str = ""
    license: str = ""
    ai_use: str = ""
    eval: str = "y"
    scope: str = ""
    attribution: str = ""
    pseudonym: str = ""
    tags: str = ""
    language: str = ""
    consent: bool = False
    upload: str = ""
    chat_id: str = ""
    chat_title: str = ""
    form_id: str = ""

    @classmethod
    def defaults(cls, defaults: Defaults, *, pseudonym: str, form_id: str) -> ContributeForm:
        return cls(
            license=defaults.license.value,
            ai_use=defaults.ai_use,
            eval=defaults.eval.value,
            scope=defaults.scope.value,
            attribution=defaults.attribution.value,
            pseudonym=pseudonym,
            form_id=form_id,
        )

    def with_values(self, values: dict[str, str], *, checkboxes: bool) -> ContributeForm:
        """These values over the defaults; ``checkboxes`` says unticked boxes mean no (a posted form)."""
        changes: dict[str, object] = {}
        for name in self.__struct_fields__:
            if name in ("consent", "eval"):
                continue
            if name in values:
                changes[name] = values[name][:200_000]
        if checkboxes:
            changes["eval"] = "y" if values.get("eval") == "y" else "n"
            changes["consent"] = values.get("consent") == "yes"
        elif values.get("eval") in ("y", "n"):
            changes["eval"] = values["eval"]
        return msgspec.structs.replace(self, **changes)

    def request(self, content: bytes, *, terms_version: str) -> ContributionRequest:
        """The API request this form stands for (validated by the same code as the API's)."""
        if self.label not in ("good", "fail"):
            raise InputError("say whether the answer was good or a failure", field="label")
        attribution = self.attribution or None
        if attribution == "pseudonym":
            attribution = f"pseudonym:{self.pseudonym.strip()}"
        return ContributionRequest(
            label=Label(self.label),
            content=msgspec.Raw(content),
            consent=self.consent,
            chat_id=self.chat_id or None,
            license=parse_choice(License, self.license, "license") if self.license else None,
            ai_use=self.ai_use if self.ai_use else None,
            eval=parse_choice(EvalConsent, self.eval, "eval") if self.eval else None,
            scope=parse_choice(Scope, self.scope, "scope") if self.scope else None,
            attribution=attribution,
            terms_version=terms_version,
            note=self.note or None,
            correction=self.correction or None,
            tags=[t.strip() for t in self.tags.split(",") if t.strip()],
            language=self.language.strip() or None,
            channel=Channel.WEB,
        )


class PreviewMessage(msgspec.Struct, frozen=True):
    role: str
    segments: list[tuple[str, str | None]]


class Preview(msgspec.Struct, frozen=True):
    total: int
    counts: dict[str, int]
    messages: list[PreviewMessage]


def preview_chat(chat: ParsedChat, *, note: str = "", correction: str = "") -> Preview:
    """What the pipeline's redactor will replace: every message, the ratings' words, note and correction."""
    counts: dict[str, int] = {}
    messages: list[PreviewMessage] = []

    def add(role: str, text: str) -> None:
        segments, found = highlight(text)
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
        messages.append(PreviewMessage(role=role, segments=segments))

    for message in chat.messages:
        add(message.role.value, message.content)
    for feedback in chat.feedback:
        for text in (feedback.reason, feedback.comment):
            if text:
                add("rating", text)
    if correction.strip():
        add("the right answer", correction.strip())
    if note.strip():
        add("note", note.strip())
    ordered = dict(sorted(counts.items()))
    return Preview(total=sum(ordered.values()), counts=ordered, messages=messages)
