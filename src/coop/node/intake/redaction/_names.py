"""People's names, where a turn says that a name is what follows (or precedes).

No name list: a name is one to three capitalised words (with initials such as
"R." and particles such as "van den" between them) in a place that only a name
takes.  Strong cues ("my name is", "call me", a form label "Full name:") take
any capitalised words that are not common words; weak ones ("I'm", "this is",
"Thanks,", "-- ") take title-case words only, and most also check what comes
around them ("this is Jane *from accounting*", "*Hi,* Jane *here*", a sign-off
that *ends its line*).  A role after a comma names the person before it:
"Jane Doe, head of finance".

Every cue refuses "[" before and "]" after its words, and every right-hand
check treats a placeholder like the word it replaced, so redacting a
neighbour cannot unlock or change a hit.

Longer than ~500 lines on purpose: each name cue is a few lines of pattern and context check,
and they resolve against one another; split, the precedence between cues would be hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from coop.node.intake.redaction._model import PiiType, Span, words_in

__all__ = ["NAME_GATES", "NAME_WORDS", "names"]

_NAME_WORD: Final = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w@\[])")
_NAME_GAP: Final = re.compile(r"[ \t]+")
_TITLES: Final = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "mx"})
# Lower-case words inside a name: "van den Berg", "da Silva", "de la Cruz".
_PARTICLES: Final = frozenset({
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
    "ter", "ten", "bin", "ibn", "al", "el", "y", "zu",
})  # fmt: skip
# Capitalised words that follow a cue without being a name: "I'm Sure", "This is
# Great", "call me Tomorrow", "Kind regards, The Support Team", "Name: TBD".
# The cue words of other rules are here too: a name hit must never swallow the
# "version" that keeps "version 1.2.3.4" from being read as an address.
_NOT_NAMES: Final = frozenset((
    # function words
    "a", "an", "the", "i", "i'm", "im", "i’m", "i'll", "i've", "i'd", "i’ll", "i’ve", "i’d", "me", "my", "you", "your", "he", "she", "we",
    "they", "it", "its", "it's", "him", "her", "his", "us", "them", "our", "their", "this", "that",
    "these", "those", "who", "what", "which", "where", "when", "whenever", "why", "how", "not",
    "no", "yes", "ok", "okay", "if", "at", "on", "in", "by", "for", "to", "from", "of", "with",
    "into", "about", "over", "under", "and", "or", "but", "so", "as", "just", "only", "also",
    "here", "there", "now", "then", "too", "very", "really", "still", "even", "already", "all",
    "both", "each", "every", "some", "any", "many", "much", "more", "most", "few", "other",
    "another", "such", "same", "everyone", "everybody", "someone", "somebody", "anyone",
    "anybody", "nobody", "none", "nothing", "something", "anything", "everything", "anytime",
    "again", "back", "maybe", "please", "asap", "later", "soon", "btw", "fyi", "ps", "re", "fwd",
    # states and doings after "I'm" / "I am"
    "sure", "happy", "glad", "sorry", "afraid", "aware", "able", "unable", "new", "going",
    "trying", "looking", "working", "using", "having", "getting", "doing", "thinking",
    "wondering", "planning", "writing", "building", "running", "learning", "asking", "calling",
    "reaching", "following", "coming", "leaving", "moving", "hoping", "waiting", "struggling",
    "starting", "sending", "feeling", "interested", "confused", "stuck", "curious", "excited",
    "tired", "ready", "busy", "late", "early", "free", "home", "out", "done", "fine", "good",
    "great", "right", "wrong", "correct", "sick", "ill", "well", "better", "worse", "totally",
    "absolutely", "definitely", "certainly", "honestly", "seriously", "thrilled", "delighted",
    "pleased", "proud", "worried", "scared", "nervous", "concerned", "disappointed",
    "frustrated", "annoyed", "lost", "unsure", "certain", "positive", "convinced", "familiar",
    "responsible", "allowed", "supposed", "almost", "nearly", "currently", "actually",
    "basically", "literally", "probably", "pretty", "quite", "kind", "sort", "bit", "little",
    "big", "huge", "fan", "student", "beginner", "old", "young", "alone", "available", "away",
    "always", "never", "often", "sometimes", "usually", "finally", "grateful", "thankful",
    "fully", "mostly", "kinda", "gonna", "like", "glad", "excellent", "awesome", "amazing",
    "cool", "nice", "perfect", "interesting", "important", "possible", "impossible", "true",
    "false", "hard", "easy", "simple", "weird", "strange", "odd", "useful", "helpful", "wonderful",
    "terrible", "bad", "best", "worst", "first", "last", "next", "one", "two", "part", "news",
    # nationalities, languages, beliefs ("I'm Canadian")
    "american", "canadian", "mexican", "brazilian", "british", "english", "scottish", "welsh",
    "irish", "french", "german", "dutch", "belgian", "swiss", "austrian", "spanish",
    "portuguese", "italian", "greek", "turkish", "polish", "czech", "russian", "ukrainian",
    "swedish", "norwegian", "danish", "finnish", "icelandic", "european", "african", "asian",
    "indian", "pakistani", "chinese", "japanese", "korean", "vietnamese", "thai", "filipino",
    "indonesian", "australian", "arab", "arabic", "persian", "jewish", "muslim", "christian",
    "catholic", "protestant", "hindu", "buddhist", "atheist", "vegan", "vegetarian",
    # sentence openers and the words around a greeting or sign-off
    "ask", "tell", "email", "ping", "contact", "thanks", "thank", "call", "message", "cc",
    "loop", "meet", "talk", "speak", "see", "check", "click", "try", "let", "get", "make",
    "send", "sent", "use", "go", "come", "look", "read", "note", "hope", "oh", "hmm", "hi",
    "hello", "hey", "dear", "regards", "cheers", "sincerely", "wishes", "love", "lol",
    # teams, services and organisations ("Kind regards, Customer Service")
    "team", "service", "services", "support", "department", "dept", "desk", "office", "group",
    "staff", "management", "admin", "administration", "hr", "it", "sales", "marketing",
    "finance", "accounting", "legal", "helpdesk", "customer", "customers", "client", "clients",
    "company", "inc", "ltd", "llc", "gmbh", "corp", "bot", "ai", "chatgpt", "gpt", "assistant",
    # form values that are not names
    "tbd", "tba", "na", "n/a", "null", "unknown", "anonymous", "redacted", "todo", "xxx",
    "test", "tests", "sample", "example", "required", "optional", "pending", "below", "above",
    "blank", "name", "full", "surname", "contact",
    # software words that follow "this is" or a YAML "name:"
    "python", "java", "javascript", "typescript", "rust", "linux", "windows", "mac", "macos",
    "excel", "word", "google", "microsoft", "apple", "amazon", "github", "docker", "react",
    "node", "sql", "json", "yaml", "api", "http", "html", "css", "code", "error", "bug",
    "deploy", "checkout", "install", "setup", "update", "upgrade", "main", "master", "default",
    "root", "user", "server",
    # times
    "today", "tonight", "tomorrow", "yesterday", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "weekend", "morning", "evening", "afternoon", "night",
    "january", "february", "march", "september", "october", "november", "december",
    # other rules' cue words
    "version", "ver", "release", "build", "rev", "revision", "firmware", "fw", "order",
    "invoice", "isbn", "ssn", "phone", "tel", "mobile", "cell", "number",
))  # fmt: skip

_Take = tuple[int, int]


def _take(text: str, pos: int, *, titlecase: bool) -> _Take | None:
    """The name at ``pos``: up to three capitalised words, a title before them left out.

    ``titlecase`` refuses words in capitals ("TBD", "CI"), for cues that also
    introduce other things; initials ("R.") are always welcome.
    """
    words, particles, start, end = 0, 0, -1, -1
    title_allowed = True
    while words < 3:
        word = _NAME_WORD.match(text, pos)
        if word is None:
            break
        w = word[0]
        if not w[0].isupper():
            # "da Silva": particles only between name words, at most three in a row.
            if words and w in _PARTICLES and particles < 3:
                particles += 1
                gap = _NAME_GAP.match(text, word.end())
                if gap is None:
                    break
                pos = gap.end()
                continue
            break
        lowered = w.casefold()
        if title_allowed and lowered in _TITLES:  # "Dr. Ada Lovelace": keep the title
            pos = word.end() + text.startswith(".", word.end())
        elif len(w) == 1:  # an initial needs its full stop: "N/A" and "A student" are not names
            if not text.startswith(".", word.end()):
                break
            start = word.start() if start < 0 else start
            end = pos = word.end() + 1
            words += 1
        elif lowered in _NOT_NAMES or (titlecase and w.isupper()):  # "TBD", "CI" after a weak cue
            break
        else:
            start = word.start() if start < 0 else start
            end = pos = word.end()
            words += 1
        particles = 0
        title_allowed = False
        gap = _NAME_GAP.match(text, pos)
        if gap is None:
            break
        pos = gap.end()
    return (start, end) if start >= 0 else None


# After a weak cue's name: its line ends ("Cheers, Jane" + end of line), or a
# word that introduces a person follows ("this is Jane from accounting").
_LINE_END: Final = re.compile(r"[.!]?[ \t]*(?:\n|\Z)")
_INTRO_AFTER: Final = re.compile(r"(?i:[ \t]+(?:from|speaking|calling|here|again)(?![\w\[\]]))")
_HERE_AFTER: Final = re.compile(r"(?i:[ \t]+here(?![\w\[\]]))")
_BTW_AFTER: Final = re.compile(r"(?i:[ \t]+(?:btw|here|from)(?![\w\[\]])|[ \t]*!|[ \t]*\Z)")
_GREETING: Final = (
    r"(?:hi|hello|hey|hiya|howdy|morning|evening|greetings|good[ \t]+(?:morning|afternoon|evening|day))"
    r"(?:[ \t]+(?:all|everyone|everybody|team|folks|there|guys|again|y'all))?"
)
_GREETING_BEFORE: Final = re.compile(rf"(?i:(?<![\w\[\]]){_GREETING}[ \t]*[,!.:;–—-]*[ \t]+\Z)")


def _greeted(text: str, cue_start: int) -> bool:
    """Whether a greeting ends right before ``cue_start``: "Hi, this is ...", "Hello! It's ..."."""
    return _GREETING_BEFORE.search(text, max(0, cue_start - 40), cue_start) is not None


_Accept = Callable[[str, re.Match[str], _Take], bool]


class _Cue:
    """A pattern that ends where a name starts, and what must hold around the name.

    A ``line_start`` cue is matched only at the start of the text and of each line.
    """

    __slots__ = ("accept", "endings", "gates", "line_start", "pattern", "symbols", "titlecase")

    def __init__(
        self,
        gates: tuple[str, ...],
        pattern: str,
        *,
        titlecase: bool,
        accept: _Accept | None = None,
        line_start: bool = False,
        symbols: tuple[str, ...] = (),
        endings: tuple[str, ...] = (),
    ) -> None:
        self.gates = frozenset(gates)
        # How an ASCII match of the cue may end (see "the cheap tests" below).
        self.endings = endings
        self.symbols = symbols
        # A name starts with a capital: most cue words are followed by something
        # else, and the engine is the cheap place to find that out.
        self.pattern = re.compile(pattern + r"(?=[^\W\d_])(?![a-z])")
        self.titlecase = titlecase
        self.accept = accept
        self.line_start = line_start

    def matches(self, text: str) -> Iterator[re.Match[str]]:
        if not self.line_start:
            yield from self.pattern.finditer(text)
            return
        for pos in (0, *(m.end() for m in _NEWLINE.finditer(text))):
            if (m := self.pattern.match(text, pos)) is not None:
                yield m


_NEWLINE: Final = re.compile(r"\n")


def _greeted_or_introduced(text: str, cue: re.Match[str], name: _Take) -> bool:
    return _greeted(text, cue.start()) or _INTRO_AFTER.match(text, name[1]) is not None


def _plain_im(text: str, cue: re.Match[str], name: _Take) -> bool:
    # "Im" without its apostrophe is also German ("Im Moment, ..."): only "Im Jane btw".
    return cue[0][1] in "'’ \t" or _BTW_AFTER.match(text, name[1]) is not None


def _here_after_greeting(text: str, cue: re.Match[str], name: _Take) -> bool:
    return _HERE_AFTER.match(text, name[1]) is not None


def _ends_line(text: str, cue: re.Match[str], name: _Take) -> bool:
    return _LINE_END.match(text, name[1]) is not None


_LABEL_QUALIFIER: Final = re.compile(
    r"(?i:(?<![\w\[\]-])(?:full|first|last|given|family|customer|client|contact|patient|your|account)[ \t]+\Z)"
)


def _label_context(text: str, cue: re.Match[str], name: _Take) -> bool:
    """A form label is capitalised, or starts a line or follows a sentence or a separator.

    So "Name: Jane" anywhere, "name: Jane" on its own line, but never the
    "- name: Checkout" of a YAML list item.
    """
    i = cue.start()
    qualifier = _LABEL_QUALIFIER.search(text, max(0, i - 12), i)
    if qualifier is not None:
        i = qualifier.start()
    capitalised = text[i].isupper()
    while i > 0 and text[i - 1] in " \t":
        i -= 1
    if i == 0:
        return True
    return text[i - 1] in "\n.!?;,|(" or (capitalised and text[i - 1] not in "-*#>\"'`")


_X: Final = r"(?<![\w\[\]].)"  # after a cue's first character: it starts a word
_LABEL_END: Final = r"[ \t]*(?::|[ \t]-|[ \t]*[–—])[ \t]*"
_SIGN_OFF_END: Final = r"(?![\w\[\]])[ \t]*[,!.]*[ \t]*(?:\n[ \t]*)?"


def _label(gates: tuple[str, ...], pattern: str, endings: tuple[str, ...]) -> _Cue:
    return _Cue(gates, pattern + _LABEL_END, titlecase=True, accept=_label_context, endings=endings)


def _sign_off(gates: tuple[str, ...], pattern: str, endings: tuple[str, ...]) -> _Cue:
    return _Cue(gates, pattern + _SIGN_OFF_END, titlecase=True, accept=_ends_line, endings=endings)


# Each pattern opens with a character class, so the engine scans for it quickly;
# each runs only when one of its gate words is in the (case-folded) text.
_CUES: Final = (
    # my name is / my name's / my full name is
    _Cue(
        ("my name", "my name’s"),
        rf"[Mm]{_X}(?i:y[ \t]+(?:full[ \t]+)?name(?:[ \t]+is|['’]s))[ \t]+",
        titlecase=False,
        endings=(" is", "name's"),
    ),
    # name's Jane / the name's Jane
    _Cue(("name s", "name’s"), rf"[Nn]{_X}(?i:ame['’]s)[ \t]+", titlecase=True, endings=("name's",)),
    # call me / calls me / I am called / I go by
    _Cue(("call me", "calls me"), rf"[Cc]{_X}(?i:alls?[ \t]+me)[ \t]+", titlecase=False, endings=(" me",)),
    _Cue(
        ("called",),
        rf"[Ii]{_X}(?i:(?:[ \t]+am|['’]m)[ \t]+called)[ \t]+",
        titlecase=False,
        endings=("called",),
    ),
    _Cue(("go by",), rf"[Ii]{_X}(?i:[ \t]+go[ \t]+by)[ \t]+", titlecase=True, endings=(" by",)),
    # I'm Jane / I am Jane / Im Jane btw
    _Cue(
        ("i m", "i’m", "i am", "im"),
        rf"[Ii]{_X}(?:['’][Mm]|[ \t]+am|m)[ \t]+",
        titlecase=True,
        accept=_plain_im,
        endings=("i'm", " am", "im"),
    ),
    # this is Jane from accounting / Hi, this is Jane / Hello, it's Jane again
    _Cue(
        ("this is", "it s", "it’s"),
        rf"[TtIi]{_X}(?:his[ \t]+is|t['’]s)[ \t]+",
        titlecase=True,
        accept=_greeted_or_introduced,
        endings=(" is", "t's"),
    ),
    # Hi all, Jane here / Good morning, Jane here from logistics
    _Cue(
        tuple(
            f"{g} here"
            for g in ("hi", "hello", "hey", "hiya", "howdy", "morning", "evening", "greetings", "good")
        ),
        rf"[HhMmEeGg]{_X}(?i:(?<=[hH])(?:i|ello|ey|iya|owdy)|(?<=[mM])orning|(?<=[eE])vening"
        r"|(?<=[gG])(?:reetings|ood[ \t]+(?:morning|afternoon|evening|day)))"
        r"(?i:[ \t]+(?:all|everyone|everybody|team|folks|there|guys|again|y'all))?[ \t]*[,!.:;–—-]*[ \t]+",
        titlecase=True,
        accept=_here_after_greeting,
        endings=(
            "hi",
            "hello",
            "hey",
            "hiya",
            "howdy",
            "morning",
            "evening",
            "greetings",
            " afternoon",
            " day",
            " all",
            " everyone",
            " everybody",
            " team",
            " folks",
            " there",
            " guys",
            " again",
            " y'all",
        ),
    ),
    # form labels: Name: / Full name - / Contact person: / Applicant: / Account holder:
    _label(("name",), rf"[Nn]{_X}(?i:ame)", ("name",)),
    _label(
        ("surname", "sender", "signed"), rf"[Ss]{_X}(?i:urname|ender|igned)", ("surname", "sender", "signed")
    ),
    _label(("contact",), rf"[Cc]{_X}(?i:ontact(?:[ \t]+(?:person|name))?)", ("contact", " person", " name")),
    _label(
        ("applicant", "author", "holder"),
        rf"[Aa]{_X}(?i:pplicant|uthor|ccount[ \t]+holder)",
        ("applicant", "author", " holder"),
    ),
    # sign-offs: Best regards,\nJane / Cheers, Jane / Thanks in advance!\nJane
    _sign_off(("regards",), rf"[Rr]{_X}(?i:egards)", ("regards",)),
    _sign_off(("wishes",), rf"[Ww]{_X}(?i:ishes)", ("wishes",)),
    _sign_off(
        ("thanks", "thank you", "thx", "talk soon", "take care"),
        rf"[Tt]{_X}(?i:hanks(?:[ \t]+(?:in[ \t]+advance|again|a[ \t]+lot|so[ \t]+much))?"
        r"|hank[ \t]+you(?:[ \t]+(?:so[ \t]+much|again))?|hx|alk[ \t]+soon|ake[ \t]+care)",
        ("thanks", " advance", " again", " lot", " much", " you", "thx", " soon", " care"),
    ),
    _sign_off(("cheers",), rf"[Cc]{_X}(?i:heers)", ("cheers",)),
    _sign_off(("sincerely", "speak soon"), rf"[Ss]{_X}(?i:incerely|peak[ \t]+soon)", ("sincerely", " soon")),
    _sign_off(("best",), rf"[Bb]{_X}(?i:est)", ("best",)),
    _sign_off(
        ("yours",),
        rf"[Yy]{_X}(?i:ours(?:[ \t]+(?:truly|sincerely|faithfully))?)",
        ("yours", " truly", " sincerely", " faithfully"),
    ),
    # -- Jane / — Jane (a signature line)
    _Cue(
        (),
        r"[ \t]*(?:--|—|–)[ \t]*",
        titlecase=True,
        accept=_ends_line,
        line_start=True,
        symbols=("--", "—", "–"),
    ),
)

# Jane Doe, head of finance / Jane (product owner): a role after the name.
_ROLE_TITLES: Final = (
    "our", "the", "my", "your", "their", "his", "her", "a", "an", "new", "senior", "junior", "acting",
    "interim", "deputy", "former",
)  # fmt: skip
_ROLE: Final = re.compile(
    r"[,(](?:(?<=,)[ \t]+|(?<=[ \t]\()[ \t]*)(?i:"
    rf"(?:(?:{'|'.join(_ROLE_TITLES)})[ \t]+)*"
    r"(?:[\w&/-]+[ \t]+){0,2}?"
    r"(?:head|director|manager|lead|chief|officer|president|vp|ceo|cto|cfo|coo|cio|ciso|founder"
    r"|co-founder|owner|engineer|developer|designer|analyst|consultant|coordinator|secretary"
    r"|accountant|administrator|specialist|intern|supervisor|partner|principal|professor|lecturer"
    r"|teacher|nurse|doctor|editor|recruiter|architect|scientist|researcher|representative"
    r"|advisor|adviser|counsel|lawyer|attorney|treasurer|chair|chairperson)(?![\w\[\]]))"
)
_ROLE_GATES: Final = frozenset((
    "head", "director", "manager", "lead", "chief", "officer", "president", "vp", "ceo", "cto",
    "cfo", "coo", "cio", "ciso", "founder", "owner", "engineer", "developer", "designer",
    "analyst", "consultant", "coordinator", "secretary", "accountant", "administrator",
    "specialist", "intern", "supervisor", "partner", "principal", "professor", "lecturer",
    "teacher", "nurse", "doctor", "editor", "recruiter", "architect", "scientist", "researcher",
    "representative", "advisor", "adviser", "counsel", "lawyer", "attorney", "treasurer", "chair",
))  # fmt: skip
_TOKEN: Final = re.compile(r"\S+")
_NAME_TOKEN: Final = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|[^\W\d_]\.")


def _name_before(text: str, end: int) -> _Take | None:
    """The title-case name that ends at ``end``: every name-like word back, particles between.

    Not capped at three words like a name after a cue: the whole run, so that a
    cue's shorter hit inside it never leaves a remnant for a second pass.
    """
    tokens = list(_TOKEN.finditer(text, max(0, end - 80), end))
    if tokens and tokens[0].start() > 0 and not text[tokens[0].start() - 1].isspace():
        tokens = tokens[1:]  # cut by the window
    start, stop, words, pending = -1, -1, 0, 0
    for token in reversed(tokens):
        t = token[0]
        if _NAME_TOKEN.fullmatch(t) is None:
            break
        if not t[0].isupper():
            if t in _PARTICLES and words and pending < 3:
                pending += 1
                continue
            break
        if t.casefold() in _NOT_NAMES or (len(t) > 2 and t.isupper()) or t.casefold() in _TITLES:
            break
        if stop < 0:
            if token.end() != tokens[-1].end():
                break  # a particle cannot end a name
            stop = token.end()
        start, words, pending = token.start(), words + 1, 0
    if start < 0 or (start > 0 and text[start - 1] in "[]"):
        return None
    return (start, stop)


# A gate is a word, or words that must all occur ("this is").  First word ->
# (cue position, the gate's words) for every gate that starts with it.
_CUES_BY_GATE: Final[dict[str, list[tuple[int, frozenset[str]]]]] = {}
for _i, _cue in enumerate(_CUES):
    for _gate in _cue.gates:
        _first, *_rest = _gate.split()
        _CUES_BY_GATE.setdefault(_first, []).append((_i, frozenset(_rest)))
_SIGNATURE_LINE: Final = tuple(i for i, cue in enumerate(_CUES) if cue.symbols)
# Every word of every gate: what ``names`` needs to find among a text's words.
_GATE_WORDS: Final = frozenset(w for cue in _CUES for g in cue.gates for w in g.split())

# --- the cheap tests before the cues and the role rule -----------------------------
#
# Most turns hold no cue, and splitting a turn into words costs more than
# redacting it otherwise.  So an ASCII turn is first mapped byte for byte to
# its *shape*: capitals become \x00 (a lower-case letter stays itself) and the
# characters that may end a cue become a space.  A pattern on the shape then
# rules out most turns, and only a turn that passes is split into words for
# the cues' own gates (as every turn was before).  The role rule gets its own
# test, on the turn in lower case.  Both patterns open with a literal byte,
# which the engine scans for quickly, and take a letter of either case
# wherever the rules do: a pattern may pass where no rule matches ("Thank
# you. What ..."); it must never fail where one does.
_SHAPE: Final = bytes.maketrans(bytes(range(65, 91)) + b"\t\n!.:;,(", b"\x00" * 26 + b"        ")
_LOWER: Final = bytes.maketrans(bytes(range(65, 91)) + b"\t(", bytes(range(97, 123)) + b" ,")


def _shaped(word: str) -> str:
    """The pattern of ``word`` (ASCII, any case) in a shape; a space there is a run of spaces."""
    return "".join(f"[{c.lower()}\\x00]" if c.isalpha() else " +" if c == " " else re.escape(c) for c in word)


def _lower(word: str) -> str:
    """The pattern of ``word`` (ASCII) in a turn in lower case; a space there is a run of spaces."""
    return "".join(" +" if c == " " else re.escape(c) for c in word)


def _alternatives(words: list[str], pattern: Callable[[str], str]) -> str:
    """``words`` as one alternation, grouped by first character: the engine rules
    a group out on its first character without entering it."""
    groups: dict[str, list[str]] = {}
    for word in words:
        groups.setdefault(word[0].lower(), []).append(word[1:])
    return (
        "(?:"
        + "|".join(
            f"{pattern(first)}(?:{'|'.join(pattern(rest) for rest in sorted(rests, key=len, reverse=True))})"
            for first, rests in groups.items()
        )
        + ")"
    )


# Every cue but the signature line ends right before the name's first letter
# (a capital, in ASCII), after a run of spaces, tabs, newlines and ",!.:;-"; and
# its last word ends with one of the cue's ``endings`` (the last word, or a
# suffix of it, of every spelling of the cue; a leading space: the cue puts
# one there).  Read backwards: a capital, the run, an ending reversed.  One
# pattern for all the cues, and one for each, which is tried before its cue.
def _cue_gate(endings: Iterable[str]) -> re.Pattern[bytes]:
    return re.compile(rf"\x00[ -]+{_alternatives([ending[::-1] for ending in endings], _shaped)}".encode())


_CUE_GATE: Final = _cue_gate(sorted({e for cue in _CUES for e in cue.endings}))
_CUE_GATES: Final = tuple(_cue_gate(cue.endings) if cue.endings else None for cue in _CUES)
# A role after "," or "(": title words, at most two other words, the role.
_ROLE_GATE: Final = re.compile(
    (
        rf", *(?:{_alternatives(list(_ROLE_TITLES), _lower)} +)*(?:[a-z0-9_&/-]+ +){{0,2}}?"
        + _alternatives(sorted(_ROLE_GATES | {"co-founder"}), _lower)
    ).encode()
)


def _name_may_follow(text: str, shape: bytes, gate: re.Pattern[bytes]) -> bool:
    """Whether ``gate`` passes at a capital that may start a name (``shape``: the text's, backwards).

    A cue's name starts at the capital its match ends before, and ``_take``
    refuses a first word that is a common word ("Thank you. *What* ..."):
    such a capital can give no cue a name.
    """
    last, pos = len(text) - 1, 0
    while (m := gate.search(shape, pos)) is not None:
        word = _NAME_WORD.match(text, last - m.start())
        if word is not None:
            lowered = word[0].casefold()
            if len(word[0]) == 1 or lowered in _TITLES or lowered not in _NOT_NAMES:
                return True
        pos = m.start() + 1
    return False


def names(text: str, out: list[Span], words: frozenset[str] | None, vocabulary: frozenset[str]) -> None:
    """Names after (or before) their cues.

    ``words``: the words of ``text`` in ``vocabulary`` (a superset of
    ``NAME_WORDS``) if already looked up, else None.
    """
    if text.islower():  # every name starts with a capital
        return
    cues = roles = True
    shape = None  # the ASCII text's shape, backwards
    if text.isascii():  # the cheap tests: see above
        raw = text.encode()
        shape = raw.translate(_SHAPE)[::-1]
        # With the words at hand, each chosen cue's own test is enough.
        cues = words is not None or _name_may_follow(text, shape, _CUE_GATE)
        roles = ("," in text or "(" in text) and _ROLE_GATE.search(raw.translate(_LOWER)) is not None
    signature = "--" in text or "—" in text or "–" in text
    if not (cues or roles or signature):
        return
    if words is None:
        words = words_in(text, vocabulary) if cues or roles else frozenset()
    chosen: set[int] = set()
    if cues:
        for word in words:
            for i, rest in _CUES_BY_GATE.get(word, ()):
                if rest <= words:
                    chosen.add(i)
    if signature:
        chosen.update(_SIGNATURE_LINE)
    for i in sorted(chosen):
        cue, gate = _CUES[i], _CUE_GATES[i]
        if shape is not None and gate is not None and not _name_may_follow(text, shape, gate):
            continue
        for m in cue.matches(text) if cue.line_start else cue.pattern.finditer(text):
            name = _take(text, m.end(), titlecase=cue.titlecase)
            if name is not None and (cue.accept is None or cue.accept(text, m, name)):
                out.append((name[0], name[1], PiiType.PERSON_NAME))
    if roles and not _ROLE_GATES.isdisjoint(words):
        for m in _ROLE.finditer(text):
            name = _name_before(text, m.start())
            if name is not None:
                out.append((name[0], name[1], PiiType.PERSON_NAME))


# Every word (or symbol) a cue needs: a text that holds none of them holds no name hit.
NAME_GATES: Final = tuple(
    sorted(
        {g.split()[0] for cue in _CUES for g in cue.gates}
        | {symbol for cue in _CUES for symbol in cue.symbols}
        | _ROLE_GATES
    )
)
# Every word the name rules look for among a text's words.
NAME_WORDS: Final = _GATE_WORDS | _ROLE_GATES
