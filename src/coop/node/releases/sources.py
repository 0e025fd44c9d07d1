"""What a release holds: the two record sources the one cut (:mod:`coop.node.releases.cut`) writes from.

- :class:`OwnRecords`: the node's own release ``vN``.  Inside the cut's read
  snapshot it decides what the release holds and what the cut admits
  (:func:`coop.governance.admit`: no freeze, no embargo, within the monthly
  cap), streams those rows in their public form, and at the commit marks what
  it admitted, if nothing moved meanwhile.
- :class:`FederatedRecords`: a federated release, this co-op's published
  records and the public records it mirrors, each row led by its ``origin``;
  the disclosure policy decides each row for the federated audience.

Both feed the same :class:`~coop.node.releases.writers.Buckets` (one bucket per
licence, so ShareAlike never mixes) and name the tombstones their audience may see.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

import msgspec
import pyarrow as pa

from coop.governance import (
    Audience,
    CollectiveState,
    Embargo,
    JointRules,
    PolicyError,
    Scope,
    admit,
    disclose,
)
from coop.node.collective.settings import current_settings
from coop.node.contributions.repository import Stage, bump_stage
from coop.node.members.attribution import PublicForms
from coop.node.policy import (
    NO_JOINT,
    OWN_FACTS,
    embargo_sql,
    mirror_facts,
    origin_states,
    own_facts,
    own_row_facts,
    own_state,
)
from coop.node.releases.model import SUMMARY_ENCODER, ReleaseSummary
from coop.node.releases.repository import FEDERATED, OWN, ReleaseTable, insert_federated_release
from coop.node.releases.tombstones import federated_tombstones, public_tombstones
from coop.node.releases.writers import Buckets, federated_schema, record_schema

__all__ = ["FederatedRecords", "OwnRecords", "RecordSource", "Selection", "select"]

S = TypeVar("S")


class RecordSource(Protocol[S]):
    """What differs between kinds of release: where the rows come from and what the commit records.

    ``fill`` runs inside the cut's read snapshot and returns what ``commit`` needs
    (``S``); ``commit`` runs in the write transaction that records the release and
    says False when what the release holds changed meanwhile (the cut starts again).
    """

    table: ReleaseTable
    folder: str  # under the node's releases folder ("" for its own releases)

    def schema(self) -> pa.Schema: ...

    def fill(self, conn: sqlite3.Connection, buckets: Buckets, *, now: int) -> S: ...

    def tombstones(self, conn: sqlite3.Connection) -> Iterable[object]: ...

    def commit(self, conn: sqlite3.Connection, summary: ReleaseSummary, selected: S, *, now: int) -> bool: ...


class Selection(msgspec.Struct, frozen=True):
    """Which rows a release holds, fixed inside its read snapshot.

    What the cut admits is kept as a condition, not as a list of rows (a million row numbers
    would be the largest thing a cut holds): the candidates up to the ``last`` one admitted,
    accepted by the snapshot's ``tick``, less the few ``refused`` on the way (the embargo's).
    """

    tick: int
    settings_version: int
    released: str  # SQL condition: every row in the release
    params: tuple[object, ...]  # for ``released``
    # What this cut admits (the commit marks them): public records it releases for the first
    # time, and federation-scope records it lets the co-ops of the federation have.
    last: int = 0  # the row number of the last candidate admitted (0: none)
    refused: str = "[]"  # JSON array: candidates before ``last`` that admit() turned down
    public: int = 0  # how many public records it admits
    federation: int = 0  # how many federation-scope records it admits

    def admitted(self, scope: Scope) -> tuple[str, tuple[object, ...]]:
        """SQL condition (and its parameters) for the rows of ``scope`` this cut admits."""
        return (
            "(state = 'accepted' AND admitted_in IS NULL AND scope = ? AND seq <= ?"
            " AND coalesce(accepted_tick, 0) <= ? AND seq NOT IN (SELECT value FROM json_each(?)))",
            (scope.value, self.last, self.tick, self.refused),
        )


def _embargo_condition(embargo: Embargo) -> tuple[str, tuple[object, ...]]:
    return embargo_sql(embargo, language="language", tags="tags")


def _month_start(now: int) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def _json_seqs(seqs: list[int]) -> str:
    """Row numbers as one JSON array parameter (``seq IN (SELECT value FROM json_each(?))``)."""
    return msgspec.json.encode(seqs).decode()


def select(conn: sqlite3.Connection, *, now: int, joint: JointRules = NO_JOINT) -> Selection:
    """Decide what the release holds and what the cut admits.

    The release holds the public records released before that are outside today's
    embargo, and the public records this cut admits.  The cut admits accepted public
    and federation-scope records alike, as the disclosure policy's :func:`admit` says
    (no freeze, no embargo), the earliest first, within the monthly volume cap counted
    over both: the federation receives exactly what the co-op's own gates let through.

    ``joint`` (what the joint actions binding the co-op demand now) adds to the co-op's own
    gates: no cut under a joint freeze, nothing admitted that a joint embargo or evaluation-only
    holds, and the cap is the smaller of the co-op's and the joint one.  Records released
    before stay in (a joint action cannot undo past licences).
    """
    (tick,) = conn.execute("SELECT n FROM ticks WHERE id = 1").fetchone()
    view = current_settings(conn)
    settings = view.settings
    if settings.quality_freeze:
        raise PolicyError("the quality freeze is on: no release until it is lifted", field="quality_freeze")
    if joint.freeze:
        named = ", ".join(a[:16] for a in joint.actions)
        raise PolicyError(
            f"a joint freeze binds this co-op ({named}): no release until it ends", field="joint"
        )
    state = CollectiveState(embargo=settings.embargo, quality_freeze=settings.quality_freeze, joint=joint)
    cap = settings.volume_cap.monthly_records
    if joint.monthly_records is not None:
        cap = joint.monthly_records if cap is None else min(cap, joint.monthly_records)
    remaining: int | None = None
    if cap is not None:
        (used,) = conn.execute(
            "SELECT coalesce(sum(new_records), 0) FROM releases WHERE created_at >= ?", (_month_start(now),)
        ).fetchone()
        remaining = max(cap - int(used), 0)
    admitted = {Scope.PUBLIC: 0, Scope.FEDERATION: 0}
    refused: list[int] = []
    last = 0
    if remaining != 0:
        # The row's columns are all admission reads (never the record's bytes: a second pass
        # over every record would double the cut); the form is applied when the files are written.
        candidates = conn.execute(
            f"SELECT c.seq, {OWN_FACTS} FROM contributions c"
            " WHERE c.state = 'accepted' AND c.admitted_in IS NULL AND c.scope IN ('public', 'federation')"
            " ORDER BY c.seq"
        )
        for seq, *row in candidates:
            # Admission never depends on how the member is credited: the row's columns suffice.
            facts = own_row_facts(row)
            if not admit(facts, state):
                refused.append(int(seq))
                continue
            last = int(seq)
            admitted[facts.scope] += 1
            if remaining is not None and sum(admitted.values()) >= remaining:
                break
    while refused and refused[-1] > last:
        refused.pop()  # after the last one admitted: outside the condition anyway
    embargo, params = _embargo_condition(settings.embargo)
    selection = Selection(
        tick=int(tick),
        settings_version=view.version,
        released="",
        params=(),
        last=last,
        refused=_json_seqs(refused),
        public=admitted[Scope.PUBLIC],
        federation=admitted[Scope.FEDERATION],
    )
    new, new_params = selection.admitted(Scope.PUBLIC)
    return msgspec.structs.replace(
        selection,
        released=f"((state = 'released' AND scope = 'public'{embargo}) OR {new})",
        params=(*params, *new_params),
    )


class OwnRecords:
    """The node's own release: the public records it released before and those this cut admits."""

    table: ReleaseTable = OWN
    folder = ""

    def __init__(self, joint: JointRules = NO_JOINT) -> None:
        self.joint = joint  # what the joint actions binding the co-op demand now

    def schema(self) -> pa.Schema:
        return record_schema()

    def fill(self, conn: sqlite3.Connection, buckets: Buckets, *, now: int) -> Selection:
        selection = select(conn, now=now, joint=self.joint)
        # One pass in table order (no sort, no second scan), every bucket written side by side.
        forms = PublicForms.load(conn)  # each row as the policy lets it out (no member link)
        rows = conn.execute(
            "SELECT license, label, coalesce(language, 'unknown'), ai_use,"
            " (SELECT record FROM contents WHERE contents.seq = contributions.seq)"
            f" FROM contributions NOT INDEXED WHERE {selection.released} ORDER BY seq",
            selection.params,
        )
        for licence, label, language, ai_use, data in rows:
            buckets.add(licence, forms.apply(bytes(data)), label=label, language=language, ai_use=ai_use)
        return selection

    def tombstones(self, conn: sqlite3.Connection) -> Iterable[object]:
        # Only records this audience held before: public ones a cut admitted (the policy decides).
        return public_tombstones(conn)

    def commit(
        self, conn: sqlite3.Connection, summary: ReleaseSummary, selected: Selection, *, now: int
    ) -> bool:
        """Record the release if nothing it holds changed meanwhile (records or settings)."""
        moved = conn.execute(
            "SELECT 1 FROM contributions WHERE left_tick > ? LIMIT 1", (selected.tick,)
        ).fetchone()
        if moved is not None or current_settings(conn).version != selected.settings_version:
            return False
        # Exactly the rows the snapshot selected (still accepted: any that left moved the tick;
        # any accepted since has a later tick), counted first: should they differ, cut again.
        public, public_params = selected.admitted(Scope.PUBLIC)
        federation, federation_params = selected.admitted(Scope.FEDERATION)
        by_channel = conn.execute(
            f"SELECT channel, count(*) FROM contributions WHERE {public} GROUP BY channel", public_params
        ).fetchall()
        (federation_count,) = conn.execute(
            f"SELECT count(*) FROM contributions WHERE {federation}", federation_params
        ).fetchone()
        if sum(n for _, n in by_channel) != selected.public or federation_count != selected.federation:
            return False
        for channel, n in by_channel:
            bump_stage(conn, now=now, channel=channel, stage=Stage.PUBLISHED, n=n)
        marked = conn.execute(
            f"UPDATE contributions SET state = 'released', released_in = ?, admitted_in = ? WHERE {public}",
            (summary.version, summary.version, *public_params),
        ).rowcount
        # Federation scope stays 'accepted' (never public); admitted, the next manifest lists it.
        marked += conn.execute(
            f"UPDATE contributions SET admitted_in = ? WHERE {federation}",
            (summary.version, *federation_params),
        ).rowcount
        # new_records counts both: the monthly cap holds over everything that leaves the co-op.
        conn.execute(
            "INSERT INTO releases (version, created_at, record_count, summary, new_records) VALUES (?, ?, ?, ?, ?)",
            (summary.version, now, summary.records, SUMMARY_ENCODER.encode(summary), marked),
        )
        return True


class _Stats(msgspec.Struct):
    label: str
    ai_use: str
    language: str | None = None


_STATS: Final = msgspec.json.Decoder(_Stats)


class FederatedRecords:
    """A federated release: this co-op's published records and the public records it mirrors.

    Each row keeps its ``origin`` (the node id of the co-op it came from), its licence and
    its AI-use preference.  A forked origin contributes nothing.
    """

    table: ReleaseTable = FEDERATED
    folder = "federated"

    def __init__(
        self, node_id: str, joint: JointRules = NO_JOINT, origins: Mapping[str, JointRules] | None = None
    ) -> None:
        self.node_id = node_id
        self.joint = joint  # what binds this co-op now
        self.origins = origins or {}  # co-op id -> what binds it, as this node holds the actions

    def schema(self) -> pa.Schema:
        return federated_schema()

    def fill(self, conn: sqlite3.Connection, buckets: Buckets, *, now: int) -> None:
        settings = current_settings(conn).settings
        mine = own_state(settings, joint=self.joint)
        # The SQL narrows to released public rows outside the embargo; the policy decides each.
        embargo, params = _embargo_condition(settings.embargo)
        own = conn.execute(
            f"SELECT c.license, c.label, coalesce(c.language, 'unknown'), c.ai_use, t.record, {OWN_FACTS}"
            " FROM contributions c NOT INDEXED JOIN contents t ON t.seq = c.seq"
            f" WHERE c.state = 'released' AND c.scope = 'public'{embargo} ORDER BY c.seq",
            params,
        )
        forms = PublicForms.load(conn)  # each row as the policy lets it out (no member link)

        def add(origin: str, licence: str, data: bytes, label: str, language: str, ai_use: str) -> None:
            row = b'{"origin":"%s",' % origin.encode() + forms.apply(data)[1:]
            buckets.add(licence, row, label=label, language=language, ai_use=ai_use, origin=origin)

        for licence, label, language, ai_use, data, *fact_row in own:
            if data is None:
                continue
            facts = own_facts(fact_row, data)
            if facts is None or not disclose(facts, mine, Audience.FEDERATED):
                continue  # the freeze, for one: a federated release re-publishes nothing then
            add(self.node_id, licence, bytes(data), label, language, ai_use)
        for origin, licence, data in _republishable(conn, self.origins):
            stats = _STATS.decode(data)
            add(origin, licence, bytes(data), stats.label, stats.language or "unknown", stats.ai_use)

    def tombstones(self, conn: sqlite3.Connection) -> Iterable[object]:
        # Each (origin, uid) once, and only records that were public there (the policy decides).
        return ({"origin": origin, "uid": uid} for origin, uid in federated_tombstones(conn, self.node_id))

    def commit(self, conn: sqlite3.Connection, summary: ReleaseSummary, selected: None, *, now: int) -> bool:
        return insert_federated_release(conn, summary, now=now)


def _republishable(
    conn: sqlite3.Connection, joint: Mapping[str, JointRules] | None = None
) -> Iterator[tuple[str, str, bytes]]:
    """Mirrored records a federated release may re-publish, as the disclosure policy says
    under each origin's latest manifest: public scope only (federation scope is never
    public), nothing while the origin is forked or frozen, nothing its embargo covers, nothing
    a joint action binding it holds (as this node holds the actions: ``joint``)."""
    states = origin_states(conn, joint=joint)
    rows = conn.execute(
        "SELECT origin, license, record, uid, license, ai_use, eval, scope FROM mirror_records ORDER BY origin, uid"
    )
    for origin, _, data, *row in rows:
        state = states.get(origin)
        # Scope and licence are the record's own (its bytes), never a relabelling peer's.
        facts = mirror_facts(origin, row, bytes(data))
        if state is not None and facts is not None and disclose(facts, state, Audience.FEDERATED):
            yield origin, facts.license.value, bytes(data)
