"""The public catalogue: released records indexed for browsing, leaderboards and bounties.

The index is kept apart from the releases (a release of a million records
must not wait for it): the scheduler indexes released records in batches,
and a withdrawal removes its record from the index in its own transaction.
Searches apply the current embargo, so an embargoed record is not shown
even if an earlier release holds it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Embargo,
    EvalConsent,
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
from coop.node.policy import embargo_sql, facts_from_record
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "Bounty",
    "Leaderboards",
    "Page",
    "SearchFilters",
    "add_bounty",
    "bounties",
    "close_bounty",
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
_WORD: Final = re.compile(r"\w+", re.UNICODE)


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


class Bounty(msgspec.Struct, frozen=True):
    id: int
    title: str
    description: str
    label: str | None
    language: str | None
    tag: str | None
    target: int
    created_by: str
    created_at: int
    closed_at: int | None
    progress: int

    @property
    def percent(self) -> int:
        return min(100, self.progress * 100 // max(self.target, 1))


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


def search(
    conn: sqlite3.Connection, filters: SearchFilters, *, embargo: Embargo, page_size: int = _PAGE
) -> Page:
    where = ["1"]
    params: list[object] = []
    words = _WORD.findall(filters.q)[:8]
    if words:
        # Each word must appear (prefix match), quoted so nothing in it is FTS syntax.
        where.append("k.seq IN (SELECT rowid FROM catalog_text WHERE catalog_text MATCH ?)")
        params.append(" AND ".join(f'"{w}"*' for w in words))
    for column in ("label", "license", "model", "language"):
        value = getattr(filters, column)
        if value:
            where.append(f"k.{column} = ?")
            params.append(value)
    if filters.tag:
        where.append("EXISTS (SELECT 1 FROM json_each(k.tags) WHERE value = ?)")
        params.append(filters.tag)
    embargo_sql, embargo_params = _embargo_sql(embargo)
    condition = " AND ".join(where) + embargo_sql
    params += embargo_params
    (total,) = conn.execute(f"SELECT count(*) FROM catalog k WHERE {condition}", params).fetchone()
    pages = max(1, -(-int(total) // page_size))
    page = min(max(filters.page, 1), pages)
    rows = conn.execute(
        "SELECT uid, label, license, model, language, tags, contributor, created_at, released_in, title"
        f" FROM catalog k WHERE {condition} ORDER BY k.seq DESC LIMIT ? OFFSET ?",
        (*params, page_size, (page - 1) * page_size),
    ).fetchall()
    state = CollectiveState(embargo=embargo)
    return Page(
        rows=[
            Row(
                uid=r[0],
                label=r[1],
                license=r[2],
                model=r[3],
                language=r[4],
                tags=json.loads(r[5]),
                contributor=r[6],
                created_at=r[7],
                released_in=None if r[8] is None else f"v{r[8]}",
                title=r[9],
            )
            for r in rows
            if disclose(_row_facts(r[0], r[2], r[4], r[5]), state, Audience.PUBLIC)
        ],
        total=int(total),
        page=page,
        pages=pages,
    )


def record(conn: sqlite3.Connection, uid: str, *, embargo: Embargo) -> Record | None:
    """A released, catalogued record not under embargo now (what the public may see of it)."""
    embargo_sql, params = _embargo_sql(embargo)
    row = conn.execute(
        f"SELECT t.record FROM catalog k JOIN contents t ON t.seq = k.seq WHERE k.uid = ?{embargo_sql}",
        (uid, *params),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    stored = _RECORD.decode(row[0])
    facts = facts_from_record(stored, state=RecordState.RELEASED, admitted=True)
    decision = disclose(facts, CollectiveState(embargo=embargo), Audience.PUBLIC)
    if not decision:
        return None
    return public_form(PublicForms.load(conn).record(stored), decision)


def _row_facts(uid: str, licence: str, language: str | None, tags: str) -> RecordFacts:
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
    )


def facets(conn: sqlite3.Connection, *, embargo: Embargo) -> dict[str, list[str]]:
    """The values a browser can filter on (of the records it may show)."""
    embargo_sql, params = _embargo_sql(embargo)
    out: dict[str, list[str]] = {}
    for column in ("license", "model", "language"):
        out[column] = [
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT {column} FROM catalog k WHERE {column} IS NOT NULL{embargo_sql} ORDER BY 1",
                params,
            )
        ]
    out["tag"] = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT j.value FROM catalog k, json_each(k.tags) j WHERE 1{embargo_sql} ORDER BY 1",
            params,
        )
    ]
    out["label"] = [label.value for label in Label]
    return out


def leaderboards(conn: sqlite3.Connection, *, embargo: Embargo, limit: int = 20) -> Leaderboards:
    """Contributors by public handle (anonymous ones together), models, languages and tags."""
    embargo_sql, params = _embargo_sql(embargo)
    where = f"WHERE 1{embargo_sql}"
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


def add_bounty(
    conn: sqlite3.Connection,
    *,
    title: str,
    description: str,
    label: str | None,
    language: str | None,
    tag: str | None,
    target: int,
    admin: str,
    now: int,
) -> int:
    cur = conn.execute(
        "INSERT INTO bounties (title, description, label, language, tag, target, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (title, description, label, language, tag, target, admin, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def close_bounty(conn: sqlite3.Connection, bounty_id: int, *, now: int) -> None:
    conn.execute("UPDATE bounties SET closed_at = ? WHERE id = ? AND closed_at IS NULL", (now, bounty_id))


def bounties(conn: sqlite3.Connection, *, include_closed: bool = False) -> list[Bounty]:
    """Bounties with their progress: accepted or released contributions made since, that match."""
    rows = conn.execute(
        "SELECT id, title, description, label, language, tag, target, created_by, created_at, closed_at FROM bounties"
        + ("" if include_closed else " WHERE closed_at IS NULL")
        + " ORDER BY created_at DESC"
    ).fetchall()
    out = []
    for row in rows:
        where = ["state IN ('accepted', 'released')", "created_at >= ?"]
        params: list[object] = [row[8]]
        if row[3]:
            where.append("label = ?")
            params.append(row[3])
        if row[4]:
            where.append("language = ?")
            params.append(row[4])
        if row[5]:
            where.append("EXISTS (SELECT 1 FROM json_each(contributions.tags) WHERE value = ?)")
            params.append(row[5])
        (progress,) = conn.execute(
            f"SELECT count(*) FROM contributions WHERE {' AND '.join(where)}", params
        ).fetchone()
        bid, title, description, label, language, tag, target, created_by, created_at, closed_at = row
        out.append(
            Bounty(
                id=bid,
                title=title,
                description=description,
                label=label,
                language=language,
                tag=tag,
                target=target,
                created_by=created_by,
                created_at=created_at,
                closed_at=closed_at,
                progress=int(progress),
            )
        )
    return out
