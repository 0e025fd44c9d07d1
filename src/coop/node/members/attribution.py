"""How a member is credited: handles, pseudonyms, their public identifiers and forms.

A record names its contributor only as the member chose (see ``The record`` in
the architecture): the member's stored handle and hash for ``username``, the
pseudonym and a hash of it for ``pseudonym`` (one hash per pseudonym), and
nothing for ``anonymous``.  The node keeps the link to the member internally.

Names are claimed first come, first served: a pseudonym may not fold to another
member's handle or pseudonym, and a new member's handle may not fold to any name
another member claimed (handle or pseudonym).  A member may reuse their own
pseudonyms in any spelling that folds to it; records then carry the spelling first
claimed, so one pseudonym is one name in releases, leaderboards and ledgers.
Default pseudonyms are random words, chosen once per member and stored, never
derived from a hash.

The fold (:func:`fold`) is deterministic and is what ``claimed_names.folded``
stores.  Repeated until nothing changes (at most four rounds): decompose (NFD);
drop invisible characters (control, format such as zero-width and bidi marks,
line and paragraph separators, unassigned and private use) and combining marks
(so ``a\u0301`` folds like ``a``); case fold; map every character to its
prototype in the Unicode confusables data of UTS #39 (``confusables.txt``, as
shipped by the ``confusable-homoglyphs`` package: Latin alpha ``ɑ``, Greek lunate
sigma ``ϲ``, ``℮``, Cyrillic ``а`` all become Latin letters, ``m`` becomes ``rn``);
then NFKC.  Finally ``l`` becomes ``i`` (after case folding, capital ``I`` and
small ``l`` would otherwise no longer meet), and runs of white space become one
space.  A fold is a comparison key, never shown.  :func:`refold` brings claims
stored under an earlier fold up to date.

A name a person chooses (a pseudonym, or a handle an admin adds) may hold only
letters (with their accents), digits, spaces and ``- _ . '``, and may not mix Latin
with Greek or Cyrillic letters; a display name an
integration sends is cleaned to that (:func:`clean_display_name`; nothing left: a
neutral random base) and then given the first free handle (``Ada``, ``Ada-2``...).

Records stored by earlier versions carry the member's hash on anonymous and
pseudonymous records; :class:`PublicForms` takes it off at every exit that
streams stored bytes (see :meth:`PublicForms.apply`).
"""

from __future__ import annotations

import functools
import secrets
import sqlite3
import unicodedata
from typing import Final

import msgspec
from confusable_homoglyphs import categories, confusables

from coop.governance import (
    Attribution,
    AttributionMode,
    Disclosure,
    Form,
    Identifier,
    Reason,
    Record,
    canonical_bytes,
    pseudonym_hash,
    public_form,
)
from coop.node.errors import InputError
from coop.node.members.accounts import Member

__all__ = [
    "Contributor",
    "PublicForms",
    "check_member_name",
    "check_name_characters",
    "claim_member_name",
    "clean_display_name",
    "default_pseudonym",
    "fold",
    "is_reserved",
    "new_pseudonym",
    "public_identity",
    "refold",
    "settle",
    "upgrade",
]

# Payout ledgers and leaderboards speak of "anonymous" contributors: no name may pass for one.
_RESERVED: Final = "anonymous"

# Characters a fold drops: control, format (zero-width, bidi marks), separators of lines and
# paragraphs, surrogates, private use, unassigned; and combining marks (accents, overlays).
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_DROPPED: Final = _INVISIBLE | {"Mn", "Me"}
# Besides letters (with their marks), digits and spaces, a name may hold these.
_NAME_PUNCTUATION: Final = "-_.'"
MAX_DISPLAY_NAME: Final = 48  # of a handle made from an integration's display name (suffix room to 64)

_ADJECTIVES: Final = (
    "amber", "brave", "calm", "clever", "coral", "crisp", "dusky", "eager", "fern", "gentle",
    "glad", "golden", "hazel", "honest", "ivory", "jolly", "keen", "lively", "lucky", "mellow",
    "misty", "noble", "olive", "plucky", "quiet", "rapid", "rosy", "rustic", "sandy", "silver",
    "sly", "snowy", "steady", "sunny", "swift", "tidy", "velvet", "wise", "witty", "zesty",
)  # fmt: skip
_NOUNS: Final = (
    "badger", "beaver", "bison", "crane", "cricket", "dolphin", "egret", "falcon", "finch", "gecko",
    "heron", "ibis", "jackal", "koala", "lark", "lemur", "lynx", "marten", "moose", "newt",
    "ocelot", "orca", "otter", "panda", "petrel", "puffin", "quail", "raven", "robin", "salmon",
    "seal", "sparrow", "stork", "swift", "tapir", "thrush", "toucan", "walrus", "wombat", "wren",
)  # fmt: skip


@functools.lru_cache(maxsize=8192)
def _prototype(char: str) -> str:
    """The character (or characters) ``char`` stands for in the UTS #39 confusables data.

    The package keeps the data's pairs in both directions; a prototype is the character
    many others map to.  The data maps each confusable character to one prototype and
    never maps a prototype, so a character with one look-alike maps to it unless that
    look-alike has only this one too: then the pair is one class, named by the smaller.
    """
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=[])
    if not found:
        return char
    near = {str(h["c"]).replace("\u200e", "") for h in found[0]["homoglyphs"]} - {""}
    if len(near) != 1:
        return char
    (other,) = near
    if len(other) != 1:
        return other  # one character looking like several (m -> rn)
    back = confusables.is_confusable(other, greedy=True, preferred_aliases=[])
    if back and len({str(h["c"]) for h in back[0]["homoglyphs"]}) > 1:
        return other
    return min(char, other)


def fold(name: str) -> str:
    """The form two names are compared in (see the module's documentation): equal folds look alike."""
    text = name
    for _ in range(4):
        before = text
        text = "".join(
            " " if c.isspace() else c
            for c in unicodedata.normalize("NFD", text)
            if c.isspace() or unicodedata.category(c) not in _DROPPED
        )
        text = unicodedata.normalize("NFKC", "".join(_prototype(c) for c in text.casefold()))
        if text == before:
            break
    return " ".join(text.replace("l", "i").split())


_RESERVED_FOLDED: Final = fold(_RESERVED)


def _reserved(folded: str) -> bool:
    return folded.startswith(_RESERVED_FOLDED)


def is_reserved(name: str) -> bool:
    """Whether ``name`` would pass for the word ledgers and leaderboards use for anonymous records."""
    return _reserved(fold(name))


def _name_character(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char == " " or char in _NAME_PUNCTUATION


def _mixes_scripts(name: str) -> bool:
    """Whether ``name`` has letters of more than one of Latin, Greek and Cyrillic (look-alike scripts)."""
    return len(categories.unique_aliases(name) & _LOOK_ALIKE_SCRIPTS) > 1


_LOOK_ALIKE_SCRIPTS: Final = frozenset({"LATIN", "GREEK", "CYRILLIC"})


def check_name_characters(name: str, *, what: str, field: str) -> None:
    """Refuse a chosen name with anything but letters, digits, spaces and ``- _ . '``.

    Letters of Latin mixed with Greek or Cyrillic ones are refused too (``pаypal``).
    """
    bad = sorted({c for c in unicodedata.normalize("NFC", name) if not _name_character(c)})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" if not c.isprintable() else repr(c) for c in bad[:3])
        raise InputError(
            f"{what} {name!r} may hold only letters, digits, spaces and - _ . ' (not {shown})", field=field
        )
    if _mixes_scripts(name):
        raise InputError(f"{what} {name!r} may not mix Latin, Greek and Cyrillic letters", field=field)


def clean_display_name(name: str | None) -> str:
    """A handle base from a name a client sent: only what a name may hold (may be empty).

    NFKC; invisible characters (control, format, line and paragraph separators) dropped;
    other white space as one space; anything but letters, digits and ``- _ . '`` dropped;
    trimmed and at most 48 characters; nothing when it mixes Latin, Greek and Cyrillic letters.
    The caller picks a neutral base when nothing is left.
    """
    text = unicodedata.normalize("NFKC", name or "")
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) not in _INVISIBLE and _name_character(char):
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    cleaned = unicodedata.normalize("NFC", cleaned)[:MAX_DISPLAY_NAME].strip(" -_.'")
    return "" if _mixes_scripts(cleaned) else cleaned


def new_pseudonym() -> str:
    """A random default pseudonym (``quiet-otter-417``): nothing in it is derived from the member."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000):03d}"


class Contributor(msgspec.Struct, frozen=True):
    """Who contributed, as processing needs it: the member's internal hash and stored handle."""

    member_hash: str
    handle: str


def public_identity(
    attribution: Attribution, contributor: Contributor, salt: bytes
) -> tuple[Attribution, str | None]:
    """The attribution and ``contributor_hash`` a record carries: only what the member chose.

    ``username`` credits the stored handle with the member's hash; a pseudonym gets its own
    hash (one per pseudonym of the member); anonymous records carry no name and no hash.
    """
    if attribution.mode is AttributionMode.USERNAME:
        return Attribution(AttributionMode.USERNAME, contributor.handle), contributor.member_hash
    if attribution.mode is AttributionMode.PSEUDONYM and attribution.name:
        return attribution, pseudonym_hash(salt, contributor.member_hash, attribution.name)
    return Attribution(AttributionMode.ANONYMOUS), None


# -- claimed names (in the write transaction) ---------------------------------------------


def _taken_by(conn: sqlite3.Connection, folded: str, member_id: int) -> str | None:
    """The kind of name (``member`` or ``pseudonym``) another member holds that folds to ``folded``."""
    row = conn.execute(
        "SELECT kind FROM claimed_names WHERE folded = ? AND member_id != ? ORDER BY kind LIMIT 1",
        (folded, member_id),
    ).fetchone()
    return None if row is None else str(row[0])


def _claim(conn: sqlite3.Connection, *, member_id: int, name: str, kind: str, now: int) -> None:
    """Claim ``name`` for the member; never silently over a name another member holds.

    The member's own earlier claim of the same fold stays as it is (its spelling counts).
    """
    folded = fold(name)
    taken = _taken_by(conn, folded, member_id)
    if taken is not None:
        field = "name" if kind == "member" else "attribution"
        raise InputError(f"{name!r} looks like another member's {_KIND_WORDS[taken]}", field=field)
    _insert_claim(conn, folded=folded, member_id=member_id, kind=kind, name=name, at=now)


def _insert_claim(
    conn: sqlite3.Connection, *, folded: str, member_id: int, kind: str, name: str, at: int
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO claimed_names (folded, member_id, kind, name, claimed_at) VALUES (?, ?, ?, ?, ?)",
        (folded, member_id, kind, name, at),
    )


_KIND_WORDS: Final = {"member": "name", "pseudonym": "pseudonym"}


def _own_pseudonym(conn: sqlite3.Connection, member_id: int, folded: str) -> str | None:
    """The spelling in which the member first claimed a pseudonym that folds to ``folded``."""
    row = conn.execute(
        "SELECT name FROM claimed_names WHERE folded = ? AND member_id = ? AND kind = 'pseudonym'",
        (folded, member_id),
    ).fetchone()
    return None if row is None else str(row[0])


def _check_pseudonym(conn: sqlite3.Connection, member_id: int, name: str) -> None:
    folded = fold(name)
    if _reserved(folded):
        raise InputError(f"a pseudonym may not start with {_RESERVED!r}", field="attribution")
    taken = _taken_by(conn, folded, member_id)
    if taken == "member":
        raise InputError(
            f"the pseudonym {name!r} is another member's name: choose a pseudonym of your own",
            field="attribution",
        )
    if taken is not None:
        raise InputError(
            f"the pseudonym {name!r} is already used by another member: choose another one",
            field="attribution",
        )
    check_name_characters(name, what="the pseudonym", field="attribution")


def check_member_name(conn: sqlite3.Connection, name: str, *, field: str = "name") -> None:
    """Refuse a new member's handle that folds to any name claimed (or a reserved word).

    Handles and pseudonyms of every member count, in the fold of :func:`fold`; the handle
    may hold only letters, digits, spaces and ``- _ . '``.
    """
    folded = fold(name)
    if not folded or _reserved(folded):
        raise InputError(f"a member name may not be empty or start with {_RESERVED!r}", field=field)
    taken = _taken_by(conn, folded, 0)
    if taken == "pseudonym":
        raise InputError(f"{name!r} is a pseudonym another member uses: choose another name", field=field)
    if taken is not None:
        raise InputError(
            f"{name!r} looks like the name of a member already here: choose another name", field=field
        )
    check_name_characters(name, what="the member name", field=field)


def claim_member_name(conn: sqlite3.Connection, *, member_id: int, name: str, now: int) -> None:
    """Record a new member's handle, so that no name can pass for it; refused if one already does."""
    _claim(conn, member_id=member_id, name=name, kind="member", now=now)


def default_pseudonym(conn: sqlite3.Connection, member_id: int, *, now: int) -> str:
    """The member's default pseudonym: chosen at random once, stored, and claimed."""
    row = conn.execute("SELECT pseudonym FROM members WHERE id = ?", (member_id,)).fetchone()
    if row is not None and row[0]:
        return str(row[0])
    while True:
        name = new_pseudonym()
        if _taken_by(conn, fold(name), member_id) is None:
            break
    conn.execute("UPDATE members SET pseudonym = ? WHERE id = ?", (name, member_id))
    _claim(conn, member_id=member_id, name=name, kind="pseudonym", now=now)
    return name


def settle(conn: sqlite3.Connection, member: Member, attribution: Attribution, *, now: int) -> Attribution:
    """The attribution a contribution is stored with, checked against the names claimed.

    ``username`` becomes the stored handle (never a name the client sent); a pseudonym is
    claimed for the member, or refused when it passes for another member's name or
    pseudonym; one the member already claimed is stored in the spelling first claimed; a
    pseudonym without a name is the member's default one.
    """
    if attribution.mode is AttributionMode.USERNAME:
        row = conn.execute("SELECT name FROM members WHERE id = ?", (member.id,)).fetchone()
        return Attribution(AttributionMode.USERNAME, member.name if row is None else str(row[0]))
    if attribution.mode is AttributionMode.PSEUDONYM:
        if not attribution.name:
            return Attribution(AttributionMode.PSEUDONYM, default_pseudonym(conn, member.id, now=now))
        claimed = _own_pseudonym(conn, member.id, fold(attribution.name))
        if claimed is not None:
            return Attribution(AttributionMode.PSEUDONYM, claimed)
        _check_pseudonym(conn, member.id, attribution.name)
        _claim(conn, member_id=member.id, name=attribution.name, kind="pseudonym", now=now)
        return attribution
    return Attribution(AttributionMode.ANONYMOUS)


def refold(conn: sqlite3.Connection) -> int:
    """Store every claim under the current :func:`fold`; returns how many claims changed.

    Claims are visited first claimed first: a member's later claim that now folds like
    their earlier one of the same kind is dropped (the first spelling counts).  Two
    members whose names now fold alike both keep them; neither can claim more like it.
    """
    rows = conn.execute(
        "SELECT folded, member_id, kind, name, claimed_at FROM claimed_names"
        " ORDER BY claimed_at, member_id, kind, name"
    ).fetchall()
    changed = 0
    for folded, member_id, kind, name, claimed_at in rows:
        new = fold(name)
        if new == folded:
            continue
        changed += 1
        conn.execute(
            "DELETE FROM claimed_names WHERE folded = ? AND member_id = ? AND kind = ?",
            (folded, member_id, kind),
        )
        _insert_claim(conn, folded=new, member_id=member_id, kind=kind, name=name, at=claimed_at)
    return changed


def upgrade(conn: sqlite3.Connection, *, now: int) -> int:
    """Bring members from before names were claimed up to date; returns how many were.

    Idempotent: it acts only on members without a stored default pseudonym.  Their
    handles are claimed, the pseudonyms their earlier contributions used are claimed
    (first use first), each gets a random default pseudonym, and catalogue rows that show
    the old default pseudonym (``member-`` and 8 hex of the member's hash) show the new one.
    Claims stored under an earlier fold are refolded first (:func:`refold`).  Handles of
    members from before are claimed even when they look like one another (both stay).
    """
    refold(conn)
    members = conn.execute(
        "SELECT id, name, contributor_hash FROM members WHERE pseudonym IS NULL"
    ).fetchall()
    if not members:
        return 0
    for member_id, name, _ in members:
        _insert_claim(conn, folded=fold(name), member_id=member_id, kind="member", name=name, at=now)
    legacy = {int(member_id): f"member-{chash[:8]}" for member_id, _, chash in members}
    used = conn.execute(
        "SELECT c.member_id, json_extract(coalesce(t.record, t.submission), '$.attribution.name')"
        " FROM contributions c JOIN contents t ON t.seq = c.seq"
        " WHERE json_extract(coalesce(t.record, t.submission), '$.attribution.mode') = 'pseudonym'"
        " ORDER BY c.seq"
    )
    for member_id, pseudonym in used.fetchall():
        if not pseudonym or pseudonym == legacy.get(int(member_id)):
            continue
        folded = fold(pseudonym)
        if not _reserved(folded) and _taken_by(conn, folded, member_id) is None:
            _claim(conn, member_id=member_id, name=pseudonym, kind="pseudonym", now=now)
    for member_id, _, _ in members:
        chosen = default_pseudonym(conn, member_id, now=now)
        conn.execute("UPDATE catalog SET contributor = ? WHERE contributor = ?", (chosen, legacy[member_id]))
    return len(members)


# -- the public form of stored bytes --------------------------------------------------------

_ATTRIBUTION: Final = b'"attribution":{"mode":"'
_HASH: Final = b'"contributor_hash":"'
_NO_IDENTIFIER: Final = Disclosure(Form.RECORD, Reason.ALLOWED, Identifier.NONE)
_RECORD: Final = msgspec.json.Decoder(Record)


class PublicForms:
    """Stored record bytes in the form the disclosure policy lets out, with old records fixed.

    Records stored before anonymity was enforced carry the member's hash: on anonymous
    records (the policy's form for them has no identifier: it is taken off), and on
    pseudonymous ones (taken off too, and a default pseudonym derived from the hash is
    replaced by the member's stored one).  Other bytes pass through untouched, after a
    look at the first few dozen bytes (canonical JSON puts ``attribution`` near the start).
    """

    def __init__(self, defaults: dict[str, str]) -> None:
        self._defaults = defaults  # member hash -> the member's default pseudonym

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> PublicForms:
        rows = conn.execute("SELECT contributor_hash, coalesce(pseudonym, '') FROM members").fetchall()
        return cls({str(h): str(p) for h, p in rows})

    def apply(self, data: bytes) -> bytes:
        """``data`` in its public form (the same object when nothing needs to change)."""
        at = data.find(_ATTRIBUTION)
        if at < 0:
            return self._decoded(data)  # not our canonical layout (a peer's bytes): read it
        mode = data[at + len(_ATTRIBUTION) : at + len(_ATTRIBUTION) + 9]
        if mode.startswith(b"username"):
            return data
        found = data.find(_HASH)
        if found < 0:
            return data
        if mode.startswith(b"pseudonym"):
            start = found + len(_HASH)
            if data[start : start + 64].decode("ascii", "replace") not in self._defaults:
                return data  # the pseudonym's own hash
        return self._decoded(data)

    def changes(self, data: bytes) -> bool:
        """Whether the stored bytes differ from their public form."""
        return self.apply(data) is not data

    def record(self, record: Record) -> Record:
        """A decoded record in its public form."""
        if record.contributor_hash is None or record.attribution.mode is AttributionMode.USERNAME:
            return record
        if record.attribution.mode is AttributionMode.ANONYMOUS:
            return public_form(record, _NO_IDENTIFIER)
        default = self._defaults.get(record.contributor_hash)
        if default is None:
            return record  # a pseudonym's own hash
        name = record.attribution.name
        if name == f"member-{record.contributor_hash[:8]}" and default:
            name = default
        return msgspec.structs.replace(
            record, contributor_hash=None, attribution=Attribution(AttributionMode.PSEUDONYM, name)
        )

    def _decoded(self, data: bytes) -> bytes:
        try:
            record = _RECORD.decode(data)
        except (msgspec.DecodeError, ValueError):
            return data
        public = self.record(record)
        return data if public is record else canonical_bytes(public)
