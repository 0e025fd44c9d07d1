"""AI-use preferences: the IETF aipref vocabulary read from a Structured Field.

A preference is an RFC 9651 Dictionary of usage labels to the tokens ``y`` or
``n`` (draft-ietf-aipref-vocab-07 has two labels, ``train-ai`` and
``search``); the same text is what a ``Content-Usage`` header carries
(draft-ietf-aipref-attach).  Rules kept here:

* unknown labels and unknown parameters are ignored, as the draft requires,
  and reported back as notices, when reading someone else's signal (a peer's
  manifest, a mirrored record); in a member's or an admin's own input
  (``strict=True``) they are errors that suggest the closest known name, since
  a typo (``trian-ai=n``) must never silently drop an opt-out;
* labels from older drafts and the seed text (``train-genai``, ``ai-use``,
  ``genai``, ``ai``, ``tdm``) are mapped to the current ones, with a notice;
  a current label given explicitly wins over a mapped one;
* a Creative Commons signal rides as the ``exceptions`` parameter of an
  ``n`` (``train-ai=n;exceptions=cc-cr``): kept and shown, never required.

Syntax errors raise :class:`AiPrefSyntaxError` naming the position; a known
label with a value other than ``y``/``n`` raises :class:`InvalidValueError`.
"""

from __future__ import annotations

import difflib
import enum
import functools
from collections.abc import Iterable
from typing import Final

import msgspec

from coop.governance.errors import AiPrefSyntaxError, InvalidValueError

__all__ = [
    "CC_SIGNALS",
    "LEGACY_LABELS",
    "AiUse",
    "ParsedAiUse",
    "Preference",
    "UsageLabel",
    "parse_ai_use",
]

MAX_LENGTH: Final = 1024


class UsageLabel(enum.StrEnum):
    TRAIN_AI = "train-ai"
    SEARCH = "search"


CC_SIGNALS: Final = frozenset({"cc-cr", "cc-cr-dc", "cc-cr-ec", "cc-cr-op"})
_CURRENT_LABELS: Final = frozenset(label.value for label in UsageLabel)
_LABELS_ARE: Final = "the labels are " + ", ".join(label.value for label in UsageLabel)

# Labels of older drafts and of the seed text, and what each now means.
LEGACY_LABELS: Final[dict[str, tuple[UsageLabel, ...]]] = {
    "train-genai": (UsageLabel.TRAIN_AI,),
    "ai-use": (UsageLabel.TRAIN_AI,),
    "genai": (UsageLabel.TRAIN_AI,),
    "ai": (UsageLabel.TRAIN_AI,),
    # Text and data mining was the broadest category: it covered both uses.
    "tdm": (UsageLabel.TRAIN_AI, UsageLabel.SEARCH),
}


class Preference(msgspec.Struct, frozen=True):
    allow: bool
    exceptions: str | None = None  # a CC signal, only meaningful on a refusal

    def to_item(self) -> str:
        text = "y" if self.allow else "n"
        if self.exceptions is not None:
            text += f";exceptions={self.exceptions}"
        return text


class AiUse(msgspec.Struct, frozen=True):
    """A normalised preference: one optional entry per current label."""

    train_ai: Preference | None = None
    search: Preference | None = None

    def get(self, label: UsageLabel) -> Preference | None:
        return self.train_ai if label is UsageLabel.TRAIN_AI else self.search

    def allows(self, label: UsageLabel) -> bool | None:
        """True or False where the member said so; None where they said nothing."""
        pref = self.get(label)
        return None if pref is None else pref.allow

    def to_header(self) -> str:
        """The canonical Structured Field text (labels sorted), as Content-Usage carries it."""
        parts = []
        for label in sorted(UsageLabel, key=lambda m: m.value):
            pref = self.get(label)
            if pref is not None:
                parts.append(f"{label.value}={pref.to_item()}")
        return ", ".join(parts)

    def describe(self) -> str:
        """One plain sentence per stated label, for people."""
        lines = []
        for label, what in (
            (UsageLabel.TRAIN_AI, "training AI models"),
            (UsageLabel.SEARCH, "AI search"),
        ):
            pref = self.get(label)
            if pref is None:
                continue
            if pref.allow:
                lines.append(f"Allowed for {what}.")
            elif pref.exceptions:
                lines.append(
                    f"Not allowed for {what}, except under the Creative Commons signal {pref.exceptions}."
                )
            else:
                lines.append(f"Not allowed for {what}.")
        return " ".join(lines) or "No preference stated."


class ParsedAiUse(msgspec.Struct, frozen=True):
    value: AiUse
    notices: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4096)
def parse_ai_use(text: str, *, field: str = "ai_use", strict: bool = False) -> ParsedAiUse:
    """Read a preference; raise on syntax errors, report ignored parts as notices.

    With ``strict`` (a member's or admin's own input) an unknown label, an unknown
    parameter or an ``exceptions`` value that is not a CC signal raises
    :class:`InvalidValueError` naming it and the closest known name; legacy labels
    are still read, with a notice.  Whatever ``strict`` accepts, the lenient reading
    gives the same result.

    Results are cached: the same few preferences arrive with almost every contribution.
    """
    if len(text) > MAX_LENGTH:
        raise AiPrefSyntaxError(
            f"preference is longer than {MAX_LENGTH} characters", field=field, position=MAX_LENGTH
        )
    parser = _SfParser(text, field)
    members = parser.dictionary()
    if strict and parser.duplicates:
        # RFC 9651 lets the last one win when reading a signal; in one's own input a repeated
        # label is a slip that could silently turn a refusal into a permission.
        key = parser.duplicates[0]
        raise InvalidValueError(
            f"the AI-use label '{key}' is given more than once: give it once", field=field
        )
    notices: list[str] = []
    explicit: dict[UsageLabel, Preference] = {}
    mapped: dict[UsageLabel, tuple[str, Preference]] = {}
    for key, (item, params) in members.items():
        targets: tuple[UsageLabel, ...]
        if key in _CURRENT_LABELS:
            targets = (UsageLabel(key),)
        elif key in LEGACY_LABELS:
            targets = LEGACY_LABELS[key]
            names = " and ".join(f"'{t.value}'" for t in targets)
            notices.append(f"'{key}' is a label from an older aipref draft; read as {names}")
        elif strict:
            hint = _suggestion(key, _CURRENT_LABELS, LEGACY_LABELS, otherwise=_LABELS_ARE)
            raise InvalidValueError(f"unknown AI-use label '{key}'{hint}", field=field)
        else:
            notices.append(f"unknown label '{key}' ignored")
            continue
        pref = _preference(key, item, params, notices, field, strict=strict)
        for target in targets:
            if key == target.value:
                explicit[target] = pref
            elif target not in mapped:
                mapped[target] = (key, pref)
            elif strict and mapped[target][1] != pref:
                raise InvalidValueError(
                    f"the older labels '{mapped[target][0]}' and '{key}' disagree on '{target.value}':"
                    f" give '{target.value}' once",
                    field=field,
                )
    result: dict[UsageLabel, Preference] = dict(explicit)
    for target, (key, pref) in mapped.items():
        if target in explicit:
            # A broad older label (tdm) refined by a current one is a choice; a synonym saying the
            # opposite of the current label is a contradiction.
            if explicit[target] != pref and strict and len(LEGACY_LABELS[key]) == 1:
                raise InvalidValueError(
                    f"'{target.value}' and the older label '{key}' disagree: give '{target.value}' once",
                    field=field,
                )
            if explicit[target] != pref:
                notices.append(f"'{target.value}' given explicitly; legacy '{key}' not used for it")
            continue
        result[target] = pref
    return ParsedAiUse(
        AiUse(train_ai=result.get(UsageLabel.TRAIN_AI), search=result.get(UsageLabel.SEARCH)),
        tuple(notices),
    )


def _preference(
    key: str, item: object, params: dict[str, object], notices: list[str], field: str, *, strict: bool
) -> Preference:
    if not isinstance(item, _Token) or item.text not in ("y", "n"):
        raise InvalidValueError(f"'{key}' must be y or n, not {_show(item)}", field=f"{field}.{key}")
    allow = item.text == "y"
    exceptions: str | None = None
    for name, value in params.items():
        if name != "exceptions":
            if strict:
                hint = _suggestion(name, ("exceptions",), otherwise="the only parameter is 'exceptions'")
                raise InvalidValueError(
                    f"unknown parameter '{name}' on '{key}'{hint}", field=f"{field}.{key}"
                )
            notices.append(f"unknown parameter '{name}' on '{key}' ignored")
            continue
        signal = value.text if isinstance(value, _Token) else value if isinstance(value, str) else None
        if signal not in CC_SIGNALS:
            if strict:
                signals = f"the signals are {', '.join(sorted(CC_SIGNALS))}"
                raise InvalidValueError(
                    f"exceptions={_show(value)} on '{key}' is not a Creative Commons signal"
                    + _suggestion(signal or "", CC_SIGNALS, otherwise=signals),
                    field=f"{field}.{key}",
                )
            notices.append(
                f"exceptions={_show(value)} on '{key}' is not a Creative Commons signal "
                f"({', '.join(sorted(CC_SIGNALS))}); ignored"
            )
        elif allow:
            notices.append(f"exceptions on '{key}=y' has no meaning; ignored")
        else:
            exceptions = signal
    return Preference(allow=allow, exceptions=exceptions)


def _suggestion(name: str, *vocabularies: Iterable[str], otherwise: str) -> str:
    """``: did you mean 'x'?`` for the closest name, looking in each vocabulary in turn."""
    for vocabulary in vocabularies:
        close = difflib.get_close_matches(name, sorted(vocabulary), n=1)
        if close:
            return f": did you mean '{close[0]}'?"
    return f": {otherwise}"


def _show(item: object) -> str:
    if isinstance(item, _Token):
        return item.text
    if isinstance(item, str):
        return f'"{item}"'
    if isinstance(item, bool):
        return "?1" if item else "?0"
    if isinstance(item, list):
        return "an inner list"
    return str(item)


class _Token(msgspec.Struct, frozen=True):
    text: str


_LCALPHA: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_KEY_CHARS: Final = _LCALPHA | frozenset("0123456789_-.*")
_ALPHA: Final = _LCALPHA | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TCHAR: Final = _ALPHA | frozenset("0123456789!#$%&'*+-.^_`|~")
_TOKEN_CHARS: Final = _TCHAR | frozenset(":/")
_BASE64: Final = _ALPHA | frozenset("0123456789+/=")
_DIGITS: Final = frozenset("0123456789")

_Params = dict[str, object]


class _SfParser:
    """RFC 9651 Dictionary parsing (sections 4.2.2 and following), with positions."""

    def __init__(self, text: str, field: str) -> None:
        self.s = text
        self.i = 0
        self.field = field
        self.duplicates: list[str] = []

    def fail(self, what: str) -> AiPrefSyntaxError:
        where = f"at character {self.i + 1}" if self.i < len(self.s) else "at the end"
        return AiPrefSyntaxError(f"{what} {where}", field=self.field, position=self.i)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1

    def dictionary(self) -> dict[str, tuple[object, _Params]]:
        if not self.s.isascii():
            self.i = next(i for i, c in enumerate(self.s) if not c.isascii())
            raise self.fail("non-ASCII character")
        self.skip(" ")
        out: dict[str, tuple[object, _Params]] = {}
        if self.i >= len(self.s):
            return out
        while True:
            key = self.key()
            if self.peek() == "=":
                self.i += 1
                value = self.item_or_inner_list()
            else:
                value = (True, self.parameters())
            if key in out:
                self.duplicates.append(key)
            out.pop(key, None)  # a later duplicate wins and takes the later position
            out[key] = value
            self.skip(" \t")
            if self.i >= len(self.s):
                return out
            if self.peek() != ",":
                raise self.fail("expected ',' between members")
            self.i += 1
            self.skip(" \t")
            if self.i >= len(self.s):
                raise self.fail("trailing ','")

    def key(self) -> str:
        start = self.i
        if self.peek() not in _LCALPHA and self.peek() != "*":
            raise self.fail("a label must start with a lowercase letter or '*'")
        self.i += 1
        while self.peek() and self.peek() in _KEY_CHARS:
            self.i += 1
        return self.s[start : self.i]

    def item_or_inner_list(self) -> tuple[object, _Params]:
        if self.peek() == "(":
            self.i += 1
            items: list[object] = []
            while True:
                self.skip(" ")
                if self.peek() == ")":
                    self.i += 1
                    return items, self.parameters()
                if not self.peek():
                    raise self.fail("unterminated inner list")
                items.append((self.bare_item(), self.parameters()))
                if self.peek() not in " )":
                    raise self.fail("expected ' ' or ')' in inner list")
        return self.bare_item(), self.parameters()

    def parameters(self) -> _Params:
        params: _Params = {}
        while self.peek() == ";":
            self.i += 1
            self.skip(" ")
            name = self.key()
            value: object = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            params[name] = value
        return params

    def bare_item(self) -> object:
        c = self.peek()
        if c == "-" or c in _DIGITS:
            return self.number()
        if c == '"':
            return self.string()
        if c == "*" or c in _ALPHA:
            start = self.i
            self.i += 1
            while self.peek() and self.peek() in _TOKEN_CHARS:
                self.i += 1
            return _Token(self.s[start : self.i])
        if c == ":":
            self.i += 1
            start = self.i
            while self.peek() and self.peek() in _BASE64:
                self.i += 1
            if self.peek() != ":":
                raise self.fail("unterminated byte sequence")
            self.i += 1
            return self.s[start : self.i - 1].encode()
        if c == "?":
            self.i += 1
            flag = self.peek()
            if flag not in ("0", "1"):
                raise self.fail("a boolean must be ?0 or ?1")
            self.i += 1
            return flag == "1"
        if c == "@":
            self.i += 1
            value = self.number()
            if not isinstance(value, int):
                raise self.fail("a date must be an integer")
            return value
        if c == "%":
            self.i += 1
            if self.peek() != '"':
                raise self.fail("expected '\"' after '%'")
            return self.string(display=True)
        raise self.fail("expected a value")

    def number(self) -> object:
        start = self.i
        if self.peek() == "-":
            self.i += 1
        if self.peek() not in _DIGITS or not self.peek():
            raise self.fail("expected a digit")
        while self.peek() and self.peek() in _DIGITS:
            self.i += 1
        if self.peek() == ".":
            self.i += 1
            frac = self.i
            while self.peek() and self.peek() in _DIGITS:
                self.i += 1
            if self.i == frac or self.i - frac > 3:
                raise self.fail("a decimal needs one to three fraction digits")
            return self.s[start : self.i]
        digits = self.s[start : self.i].lstrip("-")
        if len(digits) > 15:
            raise self.fail("an integer may have at most 15 digits")
        return int(self.s[start : self.i])

    def string(self, *, display: bool = False) -> str:
        self.i += 1  # opening quote
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("unterminated string")
            self.i += 1
            if c == '"':
                return "".join(out)
            if c == "\\" and not display:
                nxt = self.peek()
                if nxt not in ('"', "\\") or not nxt:
                    raise self.fail('only \\" and \\\\ may be escaped')
                self.i += 1
                out.append(nxt)
            elif not (" " <= c <= "~"):
                self.i -= 1
                raise self.fail("control character in string")
            else:
                out.append(c)
