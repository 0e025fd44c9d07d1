"""The channel ledger against an in-memory model, over random histories of one node.

A history mixes new records (of any scope and licence, from any intake route), release cuts,
straight publications (live at once), review requests opened, merged and closed, and
withdrawals, on two publish channels.  No channel is contacted: the publications are only the
ledger calls ``coop publish`` and the review refresh make, on an in-memory database.  The gated
licences are fixed for a history (a change of them while a review is open is not modelled).

The model goes by order, never by the clock: the database tick (table ``ticks``) orders the
withdrawals (``contributions.left_tick``) and the checks a publication's files pass (the tick
read then).  Times are coarse (three steps share a second) and a withdrawal's clock may lag by
up to two seconds, so a withdrawal and a publication often share a second or run backwards.
A push or a review may be checked, then see a withdrawal commit, then be recorded.

A live publication (a straight push at e, or a review merged at e) holds the public records
released in its version or before, not of a gated licence and not withdrawn by the tick its
files were checked at (the push's, or the opening of the review's).  A record's P^k is the
first live publication holding it; its D^k the first live publication after that (in order)
whose files were checked at or after its withdrawal's tick.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from coop.node.releases import channel_records as ledger
from coop.node.storage.migrations import migrate
from coop.node.storage.store import current_tick, next_tick

CHANNELS = ("git", "hf")
SCOPES = ("public", "public", "federation", "node")
LICENCES = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0")
ROUTES = ("web", "api", "openwebui")


@dataclass
class Record:
    scope: str
    licence: str
    route: str
    released_in: int | None = None
    withdrawn_at: int | None = None
    left: int | None = None  # the tick of its withdrawal


@dataclass
class Review:
    version: int
    cleared: int  # the tick its files were checked at
    held: frozenset[int]
    state: str = "open"


@dataclass
class Model:
    gated: frozenset[str]
    records: dict[int, Record] = field(default_factory=dict)
    version: int = 0
    # channel -> live publications in order: (step, when, tick its files were checked at, records held)
    live: dict[str, list[tuple[int, int, int, frozenset[int]]]] = field(default_factory=dict)
    reviews: dict[str, list[Review]] = field(default_factory=dict)
    offered: dict[str, set[int]] = field(default_factory=dict)

    def held(self, version: int, cleared: int) -> frozenset[int]:
        return frozenset(
            seq
            for seq, r in self.records.items()
            if r.scope == "public"
            and r.released_in is not None
            and r.released_in <= version
            and r.licence not in self.gated
            and (r.left is None or r.left > cleared)
        )

    def expected(self, channel: str) -> dict[int, tuple[str, str, int | None, int | None, int | None]]:
        """seq -> (route, state, published_at, withdrawn_at, retracted_at) on ``channel``."""
        events = sorted(self.live.get(channel, []))
        out = {}
        for seq in self.offered.get(channel, set()):
            record = self.records[seq]
            first = next(((step, e) for step, e, _, held in events if seq in held), None)
            published = None if first is None else first[1]
            gone = record.withdrawn_at
            retracted = None
            if first is not None and record.left is not None:
                left = record.left
                retracted = next((e for step, e, c, _ in events if step > first[0] and c >= left), None)
            if gone is not None:
                state = "tombstoned"
            elif published is not None:
                state = "merged"
            elif any(seq in r.held for r in self.reviews.get(channel, []) if r.state == "open"):
                state = "open"
            else:
                state = "closed"
            out[seq] = (record.route, state, published, gone, retracted)
        return out


# push/open: the channel, then a record withdrawn between the check and the recording (-1: none).
_OPS = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("cut")),
    st.tuples(st.just("push"), st.integers(0, 1), st.integers(-1, 30)),
    st.tuples(st.just("open"), st.integers(0, 1), st.integers(-1, 30)),
    st.tuples(st.just("merge"), st.integers(0, 1), st.integers(0, 5)),
    st.tuples(st.just("close"), st.integers(0, 1), st.integers(0, 5)),
    st.tuples(st.just("withdraw"), st.integers(0, 30), st.integers(0, 2)),
)


def _withdraw(conn: sqlite3.Connection, model: Model, pick: int, at: int) -> None:
    """Withdraw a record (as contributions.rights does: a tick, then the ledger's rows)."""
    if not model.records:
        return
    seq = pick % len(model.records) + 1
    record = model.records[seq]
    if record.withdrawn_at is not None:
        return
    record.withdrawn_at, record.left = at, next_tick(conn)
    conn.execute(
        "UPDATE contributions SET state = 'withdrawn', withdrawn_at = ?, left_tick = ? WHERE seq = ?",
        (at, record.left, seq),
    )
    ledger.withdrawn(conn, seq=seq, at=at)


def _run(conn: sqlite3.Connection, model: Model, op: tuple[object, ...], step: int, t: int) -> None:
    kind = op[0]
    if kind == "add":
        seq = len(model.records) + 1
        record = Record(SCOPES[int(op[1])], LICENCES[int(op[2])], ROUTES[int(op[3])])  # type: ignore[call-overload]
        model.records[seq] = record
        conn.execute(
            "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
            " license, ai_use, scope, eval, tags) VALUES (?, ?, 1, 'accepted', ?, ?, ?, 'good', ?, '', ?, 'y', '[]')",
            (seq, f"u{seq}", record.route, t, t, record.licence, record.scope),
        )
    elif kind == "cut":
        model.version += 1
        for seq, r in model.records.items():
            if r.scope == "public" and r.released_in is None and r.withdrawn_at is None:
                r.released_in = model.version
                conn.execute(
                    "UPDATE contributions SET state = 'released', released_in = ? WHERE seq = ?",
                    (model.version, seq),
                )
    elif kind == "withdraw":
        _withdraw(conn, model, int(op[1]), t - int(op[2]))  # type: ignore[call-overload]
    elif model.version:
        channel = CHANNELS[int(op[1])]  # type: ignore[call-overload]
        reviews = model.reviews.setdefault(channel, [])
        if kind == "open" and any(r.version == model.version and r.state != "closed" for r in reviews):
            return
        if kind in ("push", "open"):
            checked = current_tick(conn)  # the files are checked clear of withdrawals up to here
            held = model.held(model.version, checked)
            if int(op[2]) >= 0:  # type: ignore[call-overload]
                _withdraw(conn, model, int(op[2]), t)  # type: ignore[call-overload]
            live = kind == "push"
            if live:
                model.live.setdefault(channel, []).append((step, t, checked, held))
            else:
                reviews.append(Review(model.version, checked, held))
            model.offered.setdefault(channel, set()).update(held)
            _publication(conn, channel, model.version, t, "merged" if live else "open", checked)
            ledger.carry(
                conn,
                channel=channel,
                version=model.version,
                at=t,
                live=live,
                gated=model.gated,
                cleared=checked,
            )
        else:
            still = [r for r in reviews if r.state == "open"]
            if not still:
                return
            review = still[int(op[2]) % len(still)]  # type: ignore[call-overload]
            review.state = "merged" if kind == "merge" else "closed"
            if kind == "merge":
                model.live.setdefault(channel, []).append((step, t, review.cleared, review.held))
            ledger.settle(conn, channel=channel, version=review.version, state=review.state, at=t)


def _publication(
    conn: sqlite3.Connection, channel: str, version: int, at: int, state: str, tick: int
) -> None:
    conn.execute(
        "INSERT INTO publications (channel, target, release, ref, records, at, state, settled_at, cleared_tick)"
        " VALUES (?, 't', ?, 'r', 0, ?, ?, ?, ?)",
        (channel, f"v{version}", at, state, None if state == "open" else at, tick),
    )


_ADD, _CUT, _OPEN, _PUSH = ("add", 0, 0, 0), ("cut",), ("open", 0, -1), ("push", 0, -1)


@settings(deadline=None, max_examples=300)
@given(gate=st.booleans(), ops=st.lists(_OPS, max_size=40))
# Withdrawn while its review was open, then merged: live, and gone at the next push.
@example(gate=False, ops=[_ADD, _ADD, _CUT, _OPEN, ("withdraw", 0, 0), ("merge", 0, 0), _PUSH])
# Withdrawn in the second of the next push (steps 3 and 4 share one): retracted by it.
@example(gate=False, ops=[_ADD, _CUT, _PUSH, ("withdraw", 0, 0), _PUSH])
# Withdrawn after a push's check, before it is recorded: live with it, gone at the next push.
@example(gate=False, ops=[_ADD, _CUT, _PUSH, _ADD, _CUT, ("push", 0, 0), _PUSH])
# Withdrawn with a clock two seconds behind the push's: the order still decides.
@example(gate=False, ops=[_ADD, _CUT, _PUSH, ("withdraw", 0, 2), _PUSH])
# Stacked reviews: the older one closed while the newer still offers its records, then merged.
@example(gate=False, ops=[_ADD, _CUT, _OPEN, _ADD, _CUT, _OPEN, ("close", 0, 0), ("merge", 0, 0)])
# Both closed, then a straight push; a gated licence and other scopes never carried.
@example(
    gate=True,
    ops=[
        _ADD,
        ("add", 2, 1, 1),
        ("add", 1, 0, 2),
        _CUT,
        _OPEN,
        ("close", 0, 0),
        _PUSH,
        ("withdraw", 0, 1),
        _PUSH,
    ],
)
def test_ledger_matches_the_model_of_live_publications(gate: bool, ops: list[tuple[object, ...]]) -> None:
    model = Model(gated=frozenset({"CC-BY-4.0"}) if gate else frozenset())
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn)
        for step, op in enumerate(ops):
            _run(conn, model, op, step, 1000 + step // 3)
        for channel in CHANNELS:
            rows = {
                int(seq): (route, state, published, gone, retracted)
                for seq, route, state, published, gone, retracted in conn.execute(
                    "SELECT seq, route, state, published_at, withdrawn_at, retracted_at"
                    " FROM channel_records WHERE channel = ?",
                    (channel,),
                )
            }
            assert rows == model.expected(channel)
            for seq, (_, _, published, gone, retracted) in rows.items():
                assert model.records[seq].scope == "public"  # never a row for a non-public record
                if retracted is not None:  # only after the withdrawal, only once published
                    assert gone is not None and published is not None and retracted >= gone
            pending = {seq for seq, _ in ledger.to_retract(conn, channel=channel)}
            assert pending == {
                s for s, r in rows.items() if r[2] is not None and r[3] is not None and r[4] is None
            }
    finally:
        conn.close()
