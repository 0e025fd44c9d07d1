"""The public catalogue: released records indexed for browsing, and the leaderboards.

The index is kept apart from the releases (a release of a million records
must not wait for it): the scheduler indexes released records in batches,
and a withdrawal removes its record from the index in its own transaction.
Searches apply the current embargo, the joint actions binding the co-op (a joint embargo,
evaluation-only) and the gated licence buckets (``access.gated``: only grantees download
those), so an embargoed, held or gated record is not shown, counted or offered as a filter
choice even if an earlier release holds it; lifting the gate shows it again.

Longer than ~500 lines on purpose: the index, its filters and the two readers of it (the live
browser's bounded keyset pages and the static site's numbered ones) share one WHERE builder and
one embargo rule; split, the two readers could drift apart on what a visitor may see.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
    JointRules,
    Label,
    License,
    Record,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
    public_form,
)
from coop.node.members.attribution import PublicForms
from coop.node.policy import NO_JOINT, embargo_sql, facts_from_record, gated_sql, joint_sql
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "Leaderboards",
    "Listing",
    "Page",
    "SearchFilters",
    "browse",
    "compact_text",
    "facets",
    "index_released",
    "leaderboards",
    "record",
    "search",
]

_RECORD: Final = msgspec.json.Decoder(Record)
_NO_SWITCHES: Final = CollectiveState()
_PAGE: Final = 20
_COUNT_CAP: Final = 1000  # a search counts its matches up to here, then says "1,000+"
_COUNT_SCAN: Final = 20_000  # records with the words a count looks through, at most
_FACET_STEPS: Final = 2000  # distinct tag lists read for the tag filter's choices, at most
_FACET_PROBE: Final = 1000  # rows of a filter choice looked at for one that may be shown, at most
_OPEN: Final[frozenset[str]] = frozenset()  # no licence bucket gated
_WORD: Final = re.compile(r"\w+", re.UNICODE)
_TERM: Final = re.compile(r"(\w+)(\*?)", re.UNICODE)  # a word, and whether a * follows it
_PREFIX_MIN: Final = 3  # letters a prefix (``word*``) needs: a shorter one reads every posting of most words
_PREFIXES: Final = 2  # prefix terms a browse query may hold; the others match as whole words
_BUDGET_S: Final = 0.4  # a browse's queries run this long at most, then the page says "too broad"
_CHECK_EVERY: Final = 200  # SQLite VM steps between two looks at the clock
TOO_BROAD: Final = "This search is too broad; add a word or a filter."


class SearchFilters(msgspec.Struct, frozen=True):
    q: str = ""
    label: str = ""
    license: str = ""
    model: str = ""
    tag: str = ""
    language: str = ""
    page: int = 1


class Row(msgspec.Struct, frozen=True):
    uid: str
    label: str
    license: str
    model: str | None
    language: str | None
    tags: list[str]
    contributor: str
    created_at: int
    released_in: str | None
    title: str


class Page(msgspec.Struct, frozen=True):
    rows: list[Row]
    total: int
    page: int
    pages: int

    @property
    def count_text(self) -> str:
        return f"{self.total:,}"


class Listing(msgspec.Struct, frozen=True):
    """One page of the browser: its rows, the matches counted up to a cap, and keyset cursors.

    ``next_after`` / ``prev_before`` are the uids the next and previous pages start from
    (None: no such page); ``page`` is only the number shown.
    """

    rows: list[Row]
    total: int  # matches, counted up to _COUNT_CAP
    more: bool  # more matches than ``total``
    page: int
    next_after: str | None
    prev_before: str | None
    notices: tuple[str, ...] = ()  # how the words were read (a short prefix taken as a word, ...)
    too_broad: bool = False  # the queries ran out of their budget: no rows, say so

    @property
    def count_text(self) -> str:
        return f"{self.total:,}+" if self.more else f"{self.total:,}"

    @property
    def summary(self) -> str:
        """The sentence above the rows: how many matched, as far as they were counted."""
        if self.too_broad:
            return TOO_BROAD
        if self.total == 0 and self.more:
            # No match among the newest postings counted; older rows may still be on the page.
            older = "; older matches are listed below" if self.rows else ""
            return f"No matches among the newest {_COUNT_SCAN:,} records with these words{older}."
        return f"{self.count_text} record{'' if self.count_text == '1' else 's'} found."


class Leaderboards(msgspec.Struct, frozen=True):
    contributors: list[tuple[str, int, int]]  # name, good, fail
    models: list[tuple[str, int, int, float | None]]  # model, fail, good, good/fail ratio (None: no fails)
    languages: list[tuple[str, int]]
    tags: list[tuple[str, int]]


def _contributor(record: Record) -> str:
    """The public name a record is counted under: anonymous records all under one "anonymous"."""
    name = record.attribution.name
    return name if name and record.attribution.mode is not AttributionMode.ANONYMOUS else "anonymous"


def _text(record: Record) -> str:
    parts = [m.content for m in record.content] + [
        record.note or "",
        record.correction or "",
        " ".join(record.tags),
    ]
    return "\n".join(parts)


def index_released(conn: sqlite3.Connection, *, limit: int = 2000) -> int:
    """Index up to ``limit`` released records not indexed yet; returns how many were added.

    Records are taken release by release (a record keeps the version it was
    first released in), so the work left is found with one indexed lookup.
    """
    release, after = conn.execute("SELECT release, after_seq FROM catalog_progress WHERE id = 1").fetchone()
    added = 0
    while added < limit:
        row = conn.execute(
            "SELECT min(released_in) FROM contributions WHERE released_in >= ? AND released_in IS NOT NULL",
            (max(int(release), 1),),
        ).fetchone()
        if row is None or row[0] is None:
            break
        if int(row[0]) != release:
            release, after = int(row[0]), 0
        want = limit - added
        rows = conn.execute(
            "SELECT c.seq, t.record FROM contributions c JOIN contents t ON t.seq = c.seq"
            " WHERE c.released_in = ? AND c.seq > ? AND c.state = 'released' AND t.record IS NOT NULL"
            " ORDER BY c.seq LIMIT ?",
            (release, after, want),
        ).fetchall()
        forms = PublicForms.load(conn)  # what the public may see: no link to the member
        for seq, data in rows:
            stored = _RECORD.decode(data)
            facts = facts_from_record(stored, state=RecordState.RELEASED, admitted=True)
            # The index holds what a release published (a snapshot); the embargo applies when read.
            decision = disclose(facts, _NO_SWITCHES, Audience.PUBLIC, snapshot=True)
            if decision:
                _insert(conn, seq, release, public_form(forms.record(stored), decision))
        added += len(rows)
        if len(rows) < want:
            release, after = release + 1, 0  # this release is done
        else:
            after = rows[-1][0]
    conn.execute("UPDATE catalog_progress SET release = ?, after_seq = ? WHERE id = 1", (release, after))
    return added


def _insert(conn: sqlite3.Connection, seq: int, release: int, record: Record) -> None:
    first = next((m.content for m in record.content if m.role.value == "user"), record.content[0].content)
    conn.execute(
        "INSERT OR IGNORE INTO catalog (seq, uid, label, license, model, language, tags, contributor,"
        " created_at, released_in, title) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq,
            record.uid,
            record.label.value,
            record.license.value,
            record.model,
            record.language,
            json.dumps(list(record.tags)),
            _contributor(record),
            record.created_at,
            release,
            " ".join(first.split())[:160],
        ),
    )
    conn.execute("INSERT OR REPLACE INTO catalog_text (rowid, text) VALUES (?, ?)", (seq, _text(record)))


def compact_text(conn: sqlite3.Connection) -> None:
    """Rewrite the full-text index without the words of unindexed records.

    FTS5 keeps a deleted row's words in its index segments until they are merged; this
    SQLite has no FTS5 ``secure-delete``, so after withdrawals the index is optimised (one
    merged segment) and the write-ahead log truncated: no word of withdrawn text remains.
    """
    conn.execute("INSERT INTO catalog_text (catalog_text) VALUES ('optimize')")
    scrub_after_commit()


def _embargo_sql(embargo: Embargo) -> tuple[str, list[object]]:
    sql, params = embargo_sql(embargo, language="k.language", tags="k.tags")
    return sql, list(params)


def _hidden_sql(
    embargo: Embargo, gated: Collection[str], joint: JointRules = NO_JOINT
) -> tuple[str, list[object]]:
    """What the public may not see of ``catalog k`` now: the embargo, the gated buckets and
    what the joint actions binding the co-op hold (`` AND ...``; the policy's rule, which
    :func:`_rows` and :func:`record` ask again)."""
    embargoed, params = _embargo_sql(embargo)
    shut, shut_params = gated_sql(gated, license="k.license")
    held, held_params = joint_sql(
        joint, language="k.language", tags="k.tags", license="k.license", created_at="k.created_at"
    )
    return embargoed + shut + held, params + list(shut_params) + list(held_params)


def _state(embargo: Embargo, gated: Collection[str], joint: JointRules = NO_JOINT) -> CollectiveState:
    """The collective state a page asks the policy under: the embargo, the gated buckets and
    the joint actions binding the co-op."""
    return CollectiveState(embargo=embargo, gated=frozenset(gated), joint=joint)


def _match(filters: SearchFilters) -> str | None:
    """The full-text query of :func:`search` (the static site's pages, made offline): every word
    of ``q`` as a prefix, and the words of the tag (whole words: a record's tags are in its
    indexed text), each quoted so nothing in it is FTS syntax.  None: no words.

    The node's browser reads words whole instead (:func:`_browse_match`): FTS5 merges every
    posting of every term a prefix covers before the first row, a whole word is read lazily.
    """
    terms = [f'"{w}"*' for w, _star in _TERM.findall(filters.q)[:8]]
    terms += [f'"{w}"' for w in _WORD.findall(filters.tag)[:8]]
    return " AND ".join(terms) if terms else None


def _browse_match(filters: SearchFilters) -> tuple[str | None, tuple[str, ...]]:
    """The browser's full-text query, and notes on how its words were read.

    A word matches whole; a word typed with a trailing ``*`` is a prefix if it has at least
    ``_PREFIX_MIN`` letters (a shorter one is read as the word itself), and only the first
    ``_PREFIXES`` of them: FTS5 merges every posting of every word a prefix covers before the
    first row, seconds for ``t*`` at a million records.
    """
    terms: list[str] = []
    short: list[str] = []
    extra: list[str] = []
    prefixes = 0
    for word, star in _TERM.findall(filters.q)[:8]:
        if star and len(word) < _PREFIX_MIN:
            short.append(word)
        elif star and prefixes >= _PREFIXES:
            extra.append(word)
        elif star:
            prefixes += 1
            terms.append(f'"{word}"*')
            continue
        terms.append(f'"{word}"')
    terms += [f'"{w}"' for w in _WORD.findall(filters.tag)[:8]]
    notices: list[str] = []
    if short:
        notices.append(
            f"A prefix needs at least {_PREFIX_MIN} letters before the *: searched for the whole word"
            f"{'s' if len(short) > 1 else ''} {', '.join(short)}."
        )
    if extra:
        notices.append(
            f"At most {_PREFIXES} prefixes a search: searched for the whole word"
            f"{'s' if len(extra) > 1 else ''} {', '.join(extra)}."
        )
    return (" AND ".join(terms) if terms else None), tuple(notices)


def _where(
    filters: SearchFilters,
    embargo: Embargo,
    gated: Collection[str],
    *,
    lead: str | None = None,
    joint: JointRules = NO_JOINT,
) -> tuple[str, list[object]]:
    """The filters other than the words, the embargo and the gated buckets, over ``catalog k``.

    ``lead``: the one filter column whose index may drive the scan; the others are written
    ``+k.column`` (no index), so SQLite (which has no statistics here) cannot pick a filter
    that matches most of the catalogue over a rare one.
    """
    where = ["1"]
    params: list[object] = []
    for column in ("label", "license", "model", "language"):
        value = getattr(filters, column)
        if value:
            where.append(f"{'' if lead is None or column == lead else '+'}k.{column} = ?")
            params.append(value)
    if filters.tag:
        where.append("EXISTS (SELECT 1 FROM json_each(k.tags) WHERE value = ?)")
        params.append(filters.tag)
    hidden, hidden_params = _hidden_sql(embargo, gated, joint)
    return " AND ".join(where) + hidden, params + hidden_params


_ROW: Final = "k.uid, k.label, k.license, k.model, k.language, k.tags, k.contributor, k.created_at, k.released_in, k.title"


def _rows(
    found: list[tuple[object, ...]], embargo: Embargo, gated: Collection[str], joint: JointRules = NO_JOINT
) -> list[Row]:
    """Rows as the page shows them: each one asked of the disclosure policy once more."""
    state = _state(embargo, gated, joint)
    return [
        Row(
            uid=str(r[0]),
            label=str(r[1]),
            license=str(r[2]),
            model=r[3],  # type: ignore[arg-type]
            language=r[4],  # type: ignore[arg-type]
            tags=json.loads(str(r[5])),
            contributor=str(r[6]),
            created_at=int(r[7]),  # type: ignore[call-overload]
            released_in=None if r[8] is None else f"v{r[8]}",
            title=str(r[9]),
        )
        for r in found
        if disclose(_row_facts(str(r[0]), str(r[2]), r[4], str(r[5]), r[7]), state, Audience.PUBLIC)  # type: ignore[arg-type]
    ]


def search(
    conn: sqlite3.Connection,
    filters: SearchFilters,
    *,
    embargo: Embargo,
    gated: Collection[str] = _OPEN,
    joint: JointRules = NO_JOINT,
    page_size: int = _PAGE,
) -> Page:
    """Numbered pages with an exact count (the static site's pages); the node's own browser
    uses :func:`browse`, whose cost does not grow with the catalogue.  ``gated``: the co-op's
    gated licence buckets (``settings.access.gated``), neither shown nor counted; ``joint``:
    what the joint actions binding the co-op demand now (its embargo and eval-only hide)."""
    condition, params = _where(filters, embargo, gated, joint=joint)
    match = _match(filters)
    if match is not None:
        condition = "k.seq IN (SELECT rowid FROM catalog_text WHERE catalog_text MATCH ?) AND " + condition
        params = [match, *params]
    (total,) = conn.execute(f"SELECT count(*) FROM catalog k WHERE {condition}", params).fetchone()
    pages = max(1, -(-int(total) // page_size))
    page = min(max(filters.page, 1), pages)
    rows = conn.execute(
        f"SELECT {_ROW} FROM catalog k WHERE {condition} ORDER BY k.seq DESC LIMIT ? OFFSET ?",
        (*params, page_size, (page - 1) * page_size),
    ).fetchall()
    return Page(rows=_rows(rows, embargo, gated, joint), total=int(total), page=page, pages=pages)


class _Deadline:
    """A SQLite progress handler that stops the connection's statements at a deadline."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.hit = False

    def __call__(self) -> bool:
        if time.monotonic() >= self.at:
            self.hit = True
        return self.hit


@contextmanager
def _bounded(conn: sqlite3.Connection, seconds: float, every: int) -> Iterator[_Deadline]:
    """Statements on ``conn`` inside are interrupted (``OperationalError``) after ``seconds``."""
    deadline = _Deadline(seconds)
    conn.set_progress_handler(deadline, max(1, every))
    try:
        yield deadline
    finally:
        conn.set_progress_handler(None, 0)  # the connection is the thread's, shared by other reads


_LEAD_PROBE: Final = 1000  # rows of each filter's index counted to pick the one that drives a scan


def _lead(conn: sqlite3.Connection, filters: SearchFilters) -> str | None:
    """Of two or more column filters, the one with the fewest rows (each counted up to a cap by
    its own index, a millisecond): its index drives the scan; None with fewer than two."""
    present = [c for c in ("model", "language", "license", "label") if getattr(filters, c)]
    if len(present) < 2:
        return None
    best: tuple[int, str] | None = None
    for column in present:
        (rows,) = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM catalog WHERE {column} = ? LIMIT ?)",
            (getattr(filters, column), _LEAD_PROBE),
        ).fetchone()
        if best is None or int(rows) < best[0]:
            best = (int(rows), column)
        if not rows:
            break
    return None if best is None else best[1]


def browse(
    conn: sqlite3.Connection,
    filters: SearchFilters,
    *,
    embargo: Embargo,
    gated: Collection[str] = _OPEN,
    joint: JointRules = NO_JOINT,
    after: str | None = None,
    before: str | None = None,
    page_size: int = _PAGE,
    budget_s: float | None = None,
    check_every: int | None = None,
) -> Listing:
    """A page of the catalogue, newest first, from a keyset cursor: the records after the uid
    ``after`` (or just before ``before``), never an OFFSET; matches are counted up to a cap.

    With words, the full-text index drives the scan in seq order (``rowid`` range and order are
    FTS5's own), so a page of a common word reads a page of postings; the other filters, the
    embargo and the gated buckets (``gated``: neither shown nor counted) are checked on each
    candidate.  A cursor uid no longer catalogued starts over.

    Every query runs under one deadline (``budget_s``, the clock read every ``check_every``
    SQLite steps; None: ``_BUDGET_S`` and ``_CHECK_EVERY``): a search that needs more (a broad
    prefix, a rare mix of filters on a common word) answers an empty listing with ``too_broad``
    set, never a page that takes seconds.
    """
    match, notices = _browse_match(filters)
    seconds = _BUDGET_S if budget_s is None else budget_s
    with _bounded(conn, seconds, _CHECK_EVERY if check_every is None else check_every) as deadline:
        try:
            listing = _browse(conn, filters, embargo, gated, after, before, page_size, match, joint)
        except sqlite3.OperationalError:
            if not deadline.hit:
                raise
            listing = Listing(
                rows=[], total=0, more=False, page=1, next_after=None, prev_before=None, too_broad=True
            )
    return msgspec.structs.replace(listing, notices=notices) if notices else listing


def _browse(
    conn: sqlite3.Connection,
    filters: SearchFilters,
    embargo: Embargo,
    gated: Collection[str],
    after: str | None,
    before: str | None,
    page_size: int,
    match: str | None,
    joint: JointRules = NO_JOINT,
) -> Listing:
    """:func:`browse` without its deadline."""
    condition, params = _where(
        filters, embargo, gated, lead=None if match is not None else _lead(conn, filters), joint=joint
    )
    if match is not None:
        # CROSS JOIN keeps the full-text index outside: driven from a filter's index instead,
        # SQLite would run the MATCH once per candidate row (minutes at a million).
        source = "catalog_text t CROSS JOIN catalog k ON k.seq = t.rowid"
        condition = "catalog_text MATCH ? AND " + condition
        params = [match, *params]
        key = "t.rowid"
    else:
        source, key = "catalog k", "k.seq"
    if match is not None:
        # Counted among the newest _COUNT_SCAN records with the words at most: a rare mix of
        # filters on a common word would otherwise check every posting (what is not reached
        # shows as "N+", never as a smaller exact number).
        counted = (
            "(SELECT rowid FROM catalog_text WHERE catalog_text MATCH ? ORDER BY rowid DESC LIMIT ?) t"
            f" CROSS JOIN catalog k ON k.seq = t.rowid WHERE {condition.removeprefix('catalog_text MATCH ? AND ')}"
        )
        args = [match, _COUNT_SCAN, *params[1:], _COUNT_CAP + 1]
        (scanned,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM catalog_text WHERE catalog_text MATCH ? LIMIT ?)",
            (match, _COUNT_SCAN),
        ).fetchone()
    else:
        counted, args, scanned = f"{source} WHERE {condition}", [*params, _COUNT_CAP + 1], 0
    (found,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {counted} LIMIT ?)", args).fetchone()
    # More than the cap, or not every posting looked at: a lower bound, shown with a "+".
    capped = int(found) > _COUNT_CAP or scanned >= _COUNT_SCAN
    cursor = after or before
    seq = None
    if cursor:
        row = conn.execute("SELECT seq FROM catalog WHERE uid = ?", (cursor[:100],)).fetchone()
        seq = None if row is None else int(row[0])
    page = filters.page if seq is not None else 1
    if seq is not None and before and not after:
        # The page before: the nearest rows above the cursor, read upwards, shown newest first.
        rows = conn.execute(
            f"SELECT {_ROW} FROM {source} WHERE {condition} AND {key} > ? ORDER BY {key} ASC LIMIT ?",
            (*params, seq, page_size + 1),
        ).fetchall()
        earlier = len(rows) > page_size
        rows = rows[:page_size][::-1]
        shown = _rows(rows, embargo, gated, joint)
        return Listing(
            rows=shown,
            total=min(int(found), _COUNT_CAP),
            more=capped,
            page=max(page, 2) if earlier else 1,
            next_after=str(rows[-1][0]) if rows else None,
            prev_before=str(rows[0][0]) if earlier and rows else None,
        )
    if seq is not None:
        where, args = f"{condition} AND {key} < ?", [*params, seq]
        offset = 0
    else:
        # No cursor (a first page, or an old numbered link): a bounded OFFSET at most.
        page = min(max(filters.page, 1), _COUNT_CAP // page_size + 1)
        where, args, offset = condition, params, (page - 1) * page_size
    rows = conn.execute(
        f"SELECT {_ROW} FROM {source} WHERE {where} ORDER BY {key} DESC LIMIT ? OFFSET ?",
        (*args, page_size + 1, offset),
    ).fetchall()
    later = len(rows) > page_size
    rows = rows[:page_size]
    return Listing(
        rows=_rows(rows, embargo, gated, joint),
        total=min(int(found), _COUNT_CAP),
        more=capped,
        page=page,
        next_after=str(rows[-1][0]) if later else None,
        prev_before=str(rows[0][0]) if page > 1 and rows else None,
    )


def record(
    conn: sqlite3.Connection,
    uid: str,
    *,
    embargo: Embargo,
    gated: Collection[str] = _OPEN,
    joint: JointRules = NO_JOINT,
) -> Record | None:
    """A released, catalogued record not under embargo now, nor held by a joint action binding
    the co-op, nor in a gated bucket (what the public may see of it)."""
    hidden, params = _hidden_sql(embargo, gated, joint)
    row = conn.execute(
        f"SELECT t.record FROM catalog k JOIN contents t ON t.seq = k.seq WHERE k.uid = ?{hidden}",
        (uid, *params),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    stored = _RECORD.decode(row[0])
    facts = facts_from_record(stored, state=RecordState.RELEASED, admitted=True)
    decision = disclose(facts, _state(embargo, gated, joint), Audience.PUBLIC)
    if not decision:
        return None
    # Only this record's member matters to its public form: one indexed lookup, not every member.
    member = conn.execute(
        "SELECT contributor_hash, coalesce(pseudonym, '') FROM members WHERE contributor_hash = ?",
        (stored.contributor_hash,),
    ).fetchall()
    return public_form(PublicForms({str(h): str(p) for h, p in member}).record(stored), decision)


def _row_facts(uid: str, licence: str, language: str | None, tags: str, created_at: int) -> RecordFacts:
    """A catalogue row as the policy reads it: only released public records are catalogued."""
    return RecordFacts(
        uid=uid,
        scope=Scope.PUBLIC,
        license=License(licence),
        ai_use="",
        eval=EvalConsent.NO,
        attribution=AttributionMode.ANONYMOUS,
        state=RecordState.RELEASED,
        admitted=True,
        tags=tuple(json.loads(tags)),
        language=language,
        created_at=created_at,
    )


def _distinct(
    conn: sqlite3.Connection,
    column: str,
    embargo: Embargo,
    gated: Collection[str],
    *,
    steps: int,
    joint: JointRules = NO_JOINT,
) -> list[str]:
    """The distinct values of an indexed column, a step per value (``min(x) WHERE x > last``, a
    seek each), so the cost grows with the values, not the rows; under an embargo or a gate a
    value is kept only when a record with it may be shown, found among its first
    ``_FACET_PROBE`` rows (a choice left out is only a filter not offered; one shown for gated
    or embargoed records alone would tell they exist)."""
    hidden, params = _hidden_sql(embargo, gated, joint)
    out: list[str] = []
    last: str | None = None
    for _ in range(steps):
        if last is None:
            row = conn.execute(f"SELECT min({column}) FROM catalog").fetchone()
        else:
            row = conn.execute(f"SELECT min({column}) FROM catalog WHERE {column} > ?", (last,)).fetchone()
        if row is None or row[0] is None:
            break
        last = str(row[0])
        if column == "license" and last in gated:
            continue
        if (
            hidden
            and not conn.execute(
                f"SELECT 1 FROM (SELECT license, language, tags, created_at FROM catalog WHERE {column} = ? LIMIT ?) k"
                f" WHERE 1{hidden} LIMIT 1",
                (last, _FACET_PROBE, *params),
            ).fetchone()
        ):
            continue
        out.append(last)
    return out


def facets(
    conn: sqlite3.Connection,
    *,
    embargo: Embargo,
    gated: Collection[str] = _OPEN,
    joint: JointRules = NO_JOINT,
) -> dict[str, list[str]]:
    """The values a browser can filter on (of the records it may show: ``gated`` buckets' not).

    Read by seeks on the catalogue's indexes (migration 21), a step per distinct value; the
    tags from the distinct tag lists, the first ``_FACET_STEPS`` of them.
    """
    out: dict[str, list[str]] = {}
    for column in ("license", "model", "language"):
        out[column] = _distinct(conn, column, embargo, gated, steps=_FACET_STEPS, joint=joint)
    tags: set[str] = set()
    # A list shown under an embargo is one some record may be shown with: none holds a held tag.
    for listed in _distinct(conn, "tags", embargo, gated, steps=_FACET_STEPS, joint=joint):
        tags.update(str(t) for t in json.loads(listed))
    out["tag"] = sorted(tags)
    out["label"] = [label.value for label in Label]
    return out


def leaderboards(
    conn: sqlite3.Connection,
    *,
    embargo: Embargo,
    gated: Collection[str] = _OPEN,
    joint: JointRules = NO_JOINT,
    limit: int = 20,
) -> Leaderboards:
    """Contributors by public handle (anonymous ones together), models, languages and tags, of
    the records the public may see (gated buckets' records and those a joint action binding the
    co-op holds are not counted)."""
    hidden, params = _hidden_sql(embargo, gated, joint)
    where = f"WHERE 1{hidden}"
    contributors = [
        (r[0], int(r[1]), int(r[2]))
        for r in conn.execute(
            f"SELECT contributor, sum(label = 'good'), sum(label = 'fail') FROM catalog k {where}"
            " GROUP BY contributor ORDER BY count(*) DESC, contributor LIMIT ?",
            (*params, limit),
        )
    ]
    models = []
    for model, fail, good in conn.execute(
        f"SELECT coalesce(model, 'unknown'), sum(label = 'fail'), sum(label = 'good') FROM catalog k {where}"
        " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        (*params, limit),
    ):
        ratio = round(int(good) / int(fail), 2) if fail else None
        models.append((model, int(fail), int(good), ratio))
    languages = [
        (r[0], int(r[1]))
        for r in conn.execute(
            f"SELECT coalesce(language, 'unknown'), count(*) FROM catalog k {where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
            (*params, limit),
        )
    ]
    tags = [
        (r[0], int(r[1]))
        for r in conn.execute(
            f"SELECT j.value, count(*) FROM catalog k, json_each(k.tags) j {where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
            (*params, limit),
        )
    ]
    return Leaderboards(contributors=contributors, models=models, languages=languages, tags=tags)
