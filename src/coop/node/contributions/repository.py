"""Contributions in the store: what a contribution is there, the intake's inserts, and the reads.

Each public function here is one transaction's worth of work on a connection (run
it through the store's writer), or one read.  A member's rights over their
contributions are in :mod:`.rights`; the pipeline's steps and the admins' review in
:mod:`.review`.  State changes check the state they expect, so a withdrawal racing
the processor wins cleanly: the processor's result for a row it no longer holds is
dropped.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from typing import Final

import msgspec

from coop.governance import (
    AttributionMode,
    Audience,
    CollectiveState,
    Disclosure,
    EvalConsent,
    License,
    Record,
    RecordFacts,
    RecordState,
    Scope,
    disclose,
)
from coop.node.contributions.submission import ContributionState, Submission
from coop.node.errors import ConflictError, InputError, NotFoundError
from coop.node.members.accounts import Member
from coop.node.members.attribution import Contributor, settle
from coop.node.members.repository import ensure_external_member
from coop.node.storage.writer import scrub_after_commit

__all__ = [
    "TITLE_CHARS",
    "VIEW_COLUMNS",
    "BatchReport",
    "Claimed",
    "ClientInfo",
    "ContributionDetail",
    "ContributionView",
    "Decision",
    "Idempotency",
    "InsertResult",
    "MemberContribution",
    "NewContribution",
    "Stage",
    "bump_stage",
    "chat_title",
    "count_by_state",
    "erase_content",
    "get_contribution",
    "insert_contribution",
    "insert_contributions",
    "insert_external_contribution",
    "list_by_state",
    "list_member_contributions",
    "member_contribution",
    "owned_contribution",
    "shown_to",
    "unlist",
    "view_of",
]

S = ContributionState
_SUBMISSION_ENCODER: Final = msgspec.json.Encoder()
_SUBMISSION_DECODER: Final = msgspec.json.Decoder(Submission)
_RECORD_DECODER: Final = msgspec.json.Decoder(Record)
_DAY: Final = 86_400


class Stage(enum.StrEnum):
    """Stages of the record-generation model, counted per intake channel and day."""

    ELIGIBLE = "eligible"  # E: chats an integration could have offered
    CAPTURED = "captured"  # C: chats that reached the node
    PROMPT_SHOWN = "prompt_shown"  # S: share prompts shown to members
    CONSENT = "consent"  # A: contributions made with consent
    TRANSFORM_OK = "transform_ok"  # T: accepted by processing
    PUBLISHED = "published"  # P: first published in a release


class Decision(enum.StrEnum):
    RELEASE = "release"
    REJECT = "reject"


class Idempotency(msgspec.Struct, frozen=True):
    scope: str
    key: str
    request_sha256: str


class ClientInfo(msgspec.Struct, frozen=True):
    """Security data kept for rate limiting and abuse handling, purged after retention."""

    ip: str | None
    user_agent: str | None


class InsertResult(msgspec.Struct, frozen=True):
    uid: str
    created: bool
    state: ContributionState


class ContributionView(msgspec.Struct, frozen=True, kw_only=True):
    """What a member (or an admin) sees of one contribution."""

    uid: str
    state: ContributionState
    channel: str
    label: str
    license: str
    ai_use: str
    scope: str
    eval: str
    language: str | None
    tags: list[str]
    created_at: int
    updated_at: int
    released_in: str | None = None
    reason: str | None = None
    pii: dict[str, int] = msgspec.field(default_factory=dict)
    supersedes: str | None = None
    superseded_by: str | None = None
    decided_by: str | None = None


class MemberContribution(ContributionView, frozen=True, kw_only=True):
    """A contribution as its own member lists it: titled, so they can tell their chats apart."""

    title: str | None = None  # null once the text is erased (withdrawn, rejected, duplicate)


# Only what a title needs of the held text (msgspec skips the rest without building it).
class _Said(msgspec.Struct):
    role: str
    content: str = ""


class _HeldChat(msgspec.Struct):
    messages: list[_Said] = msgspec.field(default_factory=list)
    title: str | None = None


class _HeldSubmission(msgspec.Struct):
    chat: _HeldChat


class _HeldRecord(msgspec.Struct):
    content: list[_Said] = msgspec.field(default_factory=list)


_HELD_SUBMISSION: Final = msgspec.json.Decoder(_HeldSubmission)
_HELD_RECORD: Final = msgspec.json.Decoder(_HeldRecord)
TITLE_CHARS: Final = 80


class ContributionDetail(msgspec.Struct, frozen=True):
    view: ContributionView
    member_id: int
    submission: Submission | None
    record: Record | None


class Claimed(msgspec.Struct, frozen=True):
    seq: int
    uid: str
    created_at: int
    contributor_hash: str  # the member's own (internal) hash
    submission: bytes
    handle: str = ""  # the member's stored name, credited by `username` attribution

    @property
    def contributor(self) -> Contributor:
        return Contributor(member_hash=self.contributor_hash, handle=self.handle)


class BatchReport(msgspec.Struct, frozen=True):
    paused: bool = False  # the quality freeze is on: nothing was processed
    accepted: int = 0
    quarantined: int = 0
    duplicate: int = 0
    skipped: int = 0


VIEW_COLUMNS: Final = (
    "uid, state, channel, label, license, ai_use, scope, eval, language, tags, created_at, "
    "updated_at, released_in, reason, pii, supersedes, superseded_by, decided_by"
)


def view_of(row: tuple[object, ...]) -> ContributionView:
    (uid, state, channel, label, licence, ai_use, scope, ev, language, tags, created, updated,
     released, reason, pii, supersedes, superseded_by, decided_by) = row  # fmt: skip
    return ContributionView(
        uid=str(uid),
        state=ContributionState(str(state)),
        channel=str(channel),
        label=str(label),
        license=str(licence),
        ai_use=str(ai_use),
        scope=str(scope),
        eval=str(ev),
        language=None if language is None else str(language),
        tags=json.loads(str(tags)),
        created_at=int(created),  # type: ignore[call-overload]
        updated_at=int(updated),  # type: ignore[call-overload]
        released_in=None if released is None else f"v{released}",
        reason=None if reason is None else str(reason),
        pii={} if pii is None else json.loads(str(pii)),
        supersedes=None if supersedes is None else str(supersedes),
        superseded_by=None if superseded_by is None else str(superseded_by),
        decided_by=None if decided_by is None else str(decided_by),
    )


def bump_stage(conn: sqlite3.Connection, *, now: int, channel: str, stage: Stage, n: int = 1) -> None:
    if n <= 0:
        return
    conn.execute(
        "INSERT INTO stage_counts (day, channel, stage, n) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (day, channel, stage) DO UPDATE SET n = n + excluded.n",
        (now - now % _DAY, channel, stage.value, n),
    )


class NewContribution(msgspec.Struct, frozen=True):
    """One contribution on its way into the waiting room."""

    uid: str
    member: Member
    submission: Submission
    now: int
    idempotency: Idempotency | None = None
    client: ClientInfo | None = None


def insert_contribution(
    conn: sqlite3.Connection,
    *,
    uid: str,
    member: Member,
    submission: Submission,
    now: int,
    idempotency: Idempotency | None,
    client: ClientInfo | None,
) -> InsertResult:
    """Put a contribution in the waiting room (or return the earlier one for a retried key)."""
    (result,) = insert_contributions(
        conn, [NewContribution(uid, member, submission, now, idempotency, client)]
    )
    if isinstance(result, BaseException):
        raise result
    return result


def insert_contributions(
    conn: sqlite3.Connection, items: list[NewContribution]
) -> list[InsertResult | InputError]:
    """Many contributions in a few statements (the intake's group commit); one result each.

    A retried Idempotency-Key answers with the contribution it made before; a key reused
    for a different body is a :class:`ConflictError` for that item only, and so is an
    attribution that passes for another member's name (see :func:`attribution.settle`).
    """
    results: list[InsertResult | InputError | None] = [None] * len(items)
    fresh: list[int] = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # keys earlier in this batch: (sha, uid)
    items = list(items)
    for index, item in enumerate(items):
        try:
            attribution = settle(conn, item.member, item.submission.attribution, now=item.now)
        except InputError as exc:
            results[index] = exc
            continue
        submission = msgspec.structs.replace(item.submission, attribution=attribution)
        item = items[index] = msgspec.structs.replace(item, submission=submission)
        key = item.idempotency
        if key is None:
            fresh.append(index)
            continue
        earlier = seen.get((key.scope, key.key))
        row = (
            earlier
            or conn.execute(
                "SELECT request_sha256, uid FROM idempotency WHERE scope = ? AND key = ?",
                (key.scope, key.key),
            ).fetchone()
        )
        if row is None:
            seen[(key.scope, key.key)] = (key.request_sha256, item.uid)
            fresh.append(index)
        elif row[0] != key.request_sha256:
            results[index] = ConflictError(
                "this Idempotency-Key was already used for a different contribution", field="Idempotency-Key"
            )
        elif earlier is not None:
            results[index] = InsertResult(uid=row[1], created=False, state=S.WAITING)
        else:
            (state,) = conn.execute("SELECT state FROM contributions WHERE uid = ?", (row[1],)).fetchone()
            results[index] = InsertResult(uid=row[1], created=False, state=ContributionState(state))
    new = [items[i] for i in fresh]
    conn.executemany(
        "INSERT INTO contributions (uid, member_id, state, channel, created_at, updated_at, label,"
        " license, ai_use, scope, eval, prompt_shown, language, tags)"
        " VALUES (?, ?, 'waiting_room', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                it.uid,
                it.member.id,
                it.submission.channel.value,
                it.now,
                it.now,
                it.submission.label.value,
                it.submission.license.value,
                it.submission.ai_use,
                it.submission.scope.value,
                it.submission.eval.value,
                int(it.submission.prompt_shown),
                it.submission.language,
                json.dumps(list(it.submission.tags)),
            )
            for it in new
        ],
    )
    conn.executemany(
        "INSERT INTO contents (seq, submission) SELECT seq, ? FROM contributions WHERE uid = ?",
        [(_SUBMISSION_ENCODER.encode(it.submission), it.uid) for it in new],
    )
    conn.executemany(
        "INSERT INTO idempotency (scope, key, request_sha256, uid, created_at) VALUES (?, ?, ?, ?, ?)",
        [
            (it.idempotency.scope, it.idempotency.key, it.idempotency.request_sha256, it.uid, it.now)
            for it in new
            if it.idempotency is not None
        ],
    )
    # Captured, consent and prompt-shown are counted from these rows (see metrics.collect):
    # nothing more to write on this hot path but the security data.
    conn.executemany(
        "INSERT INTO security_events (at, ip, user_agent, member_id, action) VALUES (?, ?, ?, ?, 'contribute')",
        [(it.now, it.client.ip, it.client.user_agent, it.member.id) for it in new if it.client is not None],
    )
    for i in fresh:
        results[i] = InsertResult(uid=items[i].uid, created=True, state=S.WAITING)
    return [r for r in results if r is not None]


def shown_to(view: ContributionView, audience: Audience) -> Disclosure:
    """What the policy lets the member (or an admin) see of their contribution."""
    facts = RecordFacts(
        uid=view.uid,
        scope=Scope(view.scope),
        license=License(view.license),
        ai_use=view.ai_use,
        eval=EvalConsent(view.eval),
        attribution=AttributionMode.ANONYMOUS,  # the member and admins see the internal link anyway
        state=RecordState(view.state.value),
        admitted=view.released_in is not None,
        tags=tuple(view.tags),
        language=view.language,
    )
    return disclose(facts, CollectiveState(), audience)


def list_member_contributions(conn: sqlite3.Connection, member_id: int) -> list[MemberContribution]:
    """A member's own contributions, oldest first, each with its title while the text is held."""
    rows = conn.execute(
        f"SELECT {VIEW_COLUMNS}, t.submission, t.record FROM contributions"
        " LEFT JOIN contents t USING (seq) WHERE member_id = ? ORDER BY seq",
        (member_id,),
    ).fetchall()
    listed = []
    for row in rows:
        view = view_of(row[:-2])
        if shown_to(view, Audience.MEMBER):
            listed.append(member_contribution(view, submission=row[-2], record=row[-1]))
    return listed


def member_contribution(
    view: ContributionView, *, submission: bytes | None, record: bytes | None
) -> MemberContribution:
    """``view`` as its member sees it: titled from the held text (none once it is erased)."""
    title = None
    if shown_to(view, Audience.MEMBER).carries_content:
        if submission is not None:
            held = _HELD_SUBMISSION.decode(submission)
            title = chat_title(held.chat.title, held.chat.messages)
        elif record is not None:
            title = chat_title(None, _HELD_RECORD.decode(record).content)
    return MemberContribution(**msgspec.structs.asdict(view), title=title)


def chat_title(title: str | None, messages: list[_Said]) -> str | None:
    """The chat's title if it has one, else the first line of its first user message; at most
    TITLE_CHARS characters, None when there is neither."""
    text = " ".join((title or "").split())
    if not text:
        said = next((m.content for m in messages if m.role == "user" and m.content.strip()), "")
        text = said.strip().splitlines()[0].strip() if said.strip() else ""
    return text[:TITLE_CHARS].rstrip() or None


def list_by_state(
    conn: sqlite3.Connection, state: ContributionState, *, limit: int = 500, after: int = 0
) -> list[ContributionView]:
    """Contributions in one state, for the admins' queues."""
    rows = conn.execute(
        f"SELECT {VIEW_COLUMNS} FROM contributions WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?",
        (state.value, after, limit),
    ).fetchall()
    return [view for view in map(view_of, rows) if shown_to(view, Audience.ADMIN)]


def get_contribution(conn: sqlite3.Connection, uid: str) -> ContributionDetail | None:
    row = conn.execute(
        f"SELECT {VIEW_COLUMNS}, member_id, t.submission, t.record FROM contributions"
        " LEFT JOIN contents t USING (seq) WHERE uid = ?",
        (uid,),
    ).fetchone()
    if row is None:
        return None
    n = len(row)
    submission = None if row[n - 2] is None else _SUBMISSION_DECODER.decode(row[n - 2])
    record = None if row[n - 1] is None else _RECORD_DECODER.decode(row[n - 1])
    return ContributionDetail(
        view=view_of(row[: n - 3]), member_id=row[n - 3], submission=submission, record=record
    )


def owned_contribution(
    conn: sqlite3.Connection, uid: str, member: Member | None
) -> tuple[int, ContributionState, int]:
    """(seq, state, member_id) of a contribution the caller may act on, else 404."""
    row = conn.execute("SELECT seq, state, member_id FROM contributions WHERE uid = ?", (uid,)).fetchone()
    # Someone else's contribution is reported exactly like a missing one: no existence leak.
    if row is None or (member is not None and row[2] != member.id):
        raise NotFoundError(f"no contribution {uid} of yours", field="uid")
    return int(row[0]), ContributionState(row[1]), int(row[2])


def unlist(conn: sqlite3.Connection, seq: int) -> None:
    """Take a record out of the releases' catalogue (withdrawn, rectified): its rows are keyed by
    the contribution, and go with it, in the same transaction."""
    conn.execute("DELETE FROM catalog WHERE seq = ?", (seq,))
    conn.execute("DELETE FROM catalog_text WHERE rowid = ?", (seq,))


def erase_content(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("UPDATE contents SET submission = NULL, record = NULL WHERE seq = ?", (seq,))
    scrub_after_commit()


def insert_external_contribution(
    conn: sqlite3.Connection,
    *,
    provider: str,
    external_id: str,
    name: str | None,
    salt: bytes,
    uid: str,
    submission: Submission,
    now: int,
    idempotency: Idempotency | None,
    client: ClientInfo | None,
) -> InsertResult:
    """A contribution shared by an integration (Open WebUI) on behalf of one of its users.

    The user's member row is created in the contribution's own transaction: a refused
    request keeps nothing about them.  The e-mail is never kept.
    """
    member = ensure_external_member(
        conn, provider=provider, external_id=external_id, name=name, email=None, salt=salt, now=now
    )
    return insert_contribution(
        conn, uid=uid, member=member, submission=submission, now=now, idempotency=idempotency, client=client
    )


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """How many contributions are in each state (the admin page's counts)."""
    return {
        str(state): int(n)
        for state, n in conn.execute("SELECT state, count(*) FROM contributions GROUP BY state")
    }
