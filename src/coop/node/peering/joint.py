"""Joint actions on one node: the actions and statements in SQLite, and the co-op's decisions on them.

The rules are :mod:`coop.federation.joint` (the signed documents and what binds whom); here
they meet the database (migration 21), this node's key and the co-op's own governance.  A
co-op signs (or ends) a joint action as its rules say for the kind's setting class (freeze:
``quality_freeze``; embargo and eval-only: ``embargo``; preference: ``defaults``; volume cap:
``volume_cap``): an admin alone where that class's rule allows it, else by a proposal whose
changes are the decision path ``joint.sign`` / ``joint.end`` (:mod:`coop.node.collective.proposals`),
signed by the node when it passes.  What binds this co-op now (:meth:`JointKeeper.rules`) feeds
the disclosure policy (:mod:`coop.node.policy`).

Longer than ~500 lines on purpose: the store, the keeper and the two decision paths share one
transaction discipline (a decision is checked, signed and audited in the write that records
it); the read-only lookups pages need are in :mod:`coop.node.peering.joint_reads`.
"""

from __future__ import annotations

import base64
import builtins
import logging
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from coop.federation.joint import (
    ActionStatus,
    ActionView,
    JointAction,
    JointBook,
    JointError,
    make_action,
    make_statement,
)
from coop.federation.joint import JointStatement as Statement
from coop.federation.manifest import ManifestJoint
from coop.governance import GovernanceError, JointKind, JointRules, JointSelector, SettingClass, Signer
from coop.node.collective.audit import AuditAction, audit
from coop.node.collective.proposals import ProposalView, open_proposal, register_decision
from coop.node.collective.settings import Actor, current_settings
from coop.node.errors import ForbiddenError, InputError, NodeError, NotFoundError, StateError
from coop.node.peering.joint_reads import open_joint_votes
from coop.node.storage.store import Store

__all__ = [
    "KIND_CLASS",
    "JointKeeper",
    "SqliteJointStore",
    "joint_decision_open",
    "joint_keys",
    "open_vote_in",
]

log = logging.getLogger("coop.federation")

# Whose rule decides a co-op's signature on each kind: the setting class it acts like.
KIND_CLASS: Final = {
    JointKind.FREEZE: SettingClass.QUALITY_FREEZE,
    JointKind.EMBARGO: SettingClass.EMBARGO,
    JointKind.EVAL_ONLY: SettingClass.EMBARGO,
    JointKind.PREFERENCE: SettingClass.DEFAULTS,
    JointKind.VOLUME_CAP: SettingClass.VOLUME_CAP,
}
_RULES_SECONDS: Final = 60  # rules are recomputed at least this often (start and end dates pass)
# The store's marker is read again at most this often (another process may write: the CLI); writes
# through this process's store are seen at once.  Every intake reads the rules: this keeps them cheap.
_MARKER_SECONDS: Final = 1.0
_REASON_CHARS: Final = 2000
# The kinds whose demands hold records in beyond the co-op (declared in its manifests for peers).
_TRAVEL_KINDS: Final = frozenset({JointKind.FREEZE, JointKind.EMBARGO, JointKind.EVAL_ONLY})


class _Head(msgspec.Struct):
    """What the store reads of an action's payload (verified by the book before it is stored)."""

    proposer: str
    kind: str = ""
    coops: tuple[str, ...] = ()


class _Envelope(msgspec.Struct):
    payload: str


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_HEAD: Final = msgspec.json.Decoder(_Head)


def _head(data: bytes) -> _Head:
    return _HEAD.decode(base64.b64decode(_ENVELOPE.decode(data).payload))


class SqliteJointStore:
    """A :class:`~coop.federation.joint.JointStore` in the node's database.  An action that
    names this co-op and comes by gossip is audited (``joint.receive``) in the same transaction."""

    def __init__(self, store: Store, *, self_id: str, clock: Callable[[], int], signer: Callable[[], Signer]):
        self.store = store
        self.self_id = self_id
        self.clock = clock
        self.signer = signer
        self.actor = "gossip"
        self.generation = 0  # bumped by each write through this object (the marker is read less often)

    def marker(self) -> object:
        """Row counts and the largest row ids of both tables: they change with any write."""
        return self.store.read(
            lambda c: c.execute(
                "SELECT (SELECT count(*) || ':' || coalesce(max(rowid), 0) FROM joint_actions),"
                " (SELECT count(*) || ':' || coalesce(max(rowid), 0) FROM joint_statements)"
            ).fetchone()
        )

    def actions(self) -> list[bytes]:
        rows = self.store.read(
            lambda c: c.execute("SELECT envelope FROM joint_actions ORDER BY received_at, id").fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def statements(self) -> list[bytes]:
        rows = self.store.read(
            lambda c: c.execute(
                "SELECT envelope FROM joint_statements ORDER BY received_at, action, coop, decision"
            ).fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def add_action(self, action_id: str, data: bytes, *, received_at: int) -> bool:
        head = _head(data)
        actor = self.actor

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO joint_actions (id, envelope, proposer, received_at) VALUES (?, ?, ?, ?)",
                (action_id, data, head.proposer, received_at),
            )
            if cursor.rowcount and actor == "gossip" and self.self_id in head.coops:
                audit(
                    conn,
                    signer=self.signer(),
                    at=received_at,
                    actor=actor,
                    action=AuditAction.JOINT_RECEIVE,
                    payload={"action": action_id, "kind": head.kind, "proposer": head.proposer},
                )
            return bool(cursor.rowcount)

        added = self.store.write(write)
        self.generation += 1
        return added

    def add_statement(
        self, action_id: str, coop: str, decision: str, data: bytes, *, at: int, received_at: int
    ) -> bool:
        row = (action_id, coop, decision, data, at, received_at)
        added = self.store.write(
            lambda c: bool(
                c.execute(
                    "INSERT OR IGNORE INTO joint_statements (action, coop, decision, envelope, at, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                ).rowcount
            )
        )
        self.generation += 1
        return added

    def drop_actions(self, action_ids: Collection[str]) -> int:
        """Delete these actions and every statement about them (the book prunes what is past);
        returns how many actions were deleted."""
        chosen = sorted(set(action_ids))
        if not chosen:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            dropped = 0
            for start in range(0, len(chosen), 500):
                part = chosen[start : start + 500]
                marks = ", ".join("?" * len(part))
                conn.execute(f"DELETE FROM joint_statements WHERE action IN ({marks})", part)
                dropped += conn.execute(f"DELETE FROM joint_actions WHERE id IN ({marks})", part).rowcount
            return dropped

        dropped = self.store.write(write)
        self.generation += 1
        return dropped


# -- decision paths ----------------------------------------------------------------------------
# The registry of decision paths is the process's; a passed proposal finds the keeper of its own
# database (several nodes may live in one process: tests, the simulator).

_KEEPERS: Final[weakref.WeakValueDictionary[str, JointKeeper]] = weakref.WeakValueDictionary()


def _database(conn: sqlite3.Connection) -> str:
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(Path(path).resolve()) if path else ""
    return ""


class _Decision:
    """``joint.sign`` / ``joint.end``: the co-op decides by a vote to sign or end an action."""

    def __init__(self, decision: str) -> None:
        self.decision = decision

    def _keeper(self, conn: sqlite3.Connection) -> JointKeeper:
        keeper = _KEEPERS.get(_database(conn))
        if keeper is None:
            raise StateError("this node's federation is not loaded: joint actions cannot be decided now")
        return keeper

    def classes(self, conn: sqlite3.Connection, value: Any) -> set[SettingClass]:
        return {KIND_CLASS[self._keeper(conn).view(_text(value)).action.kind]}

    def check(self, conn: sqlite3.Connection, value: Any) -> None:
        keeper = self._keeper(conn)
        view = keeper.view(_text(value))
        keeper.check(view, self.decision)
        _refuse_open_vote(conn, view.id)

    def apply(self, conn: sqlite3.Connection, value: Any, *, at: int, signer: Signer, proposal: int) -> None:
        self._keeper(conn).state_in(
            conn, _text(value), self.decision, at=at, via=f"vote {proposal}", actor=f"proposal {proposal}"
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise InputError("a joint action's id (hex)", field="changes")
    return value


def joint_decision_open(conn: sqlite3.Connection) -> bool:
    """Whether an open proposal decides a joint action (its node's keeper must be loaded)."""
    row = conn.execute(
        "SELECT 1 FROM proposals WHERE status = 'open' AND CAST(changes AS TEXT) LIKE '{\"joint.%' LIMIT 1"
    ).fetchone()
    return row is not None


def open_vote_in(conn: sqlite3.Connection, action_id: str) -> int | None:
    """The number of this co-op's open proposal deciding to sign or end the action (the
    oldest), or None."""
    vote = open_joint_votes(conn).get(action_id)
    return None if vote is None else vote[0]


def _refuse_open_vote(conn: sqlite3.Connection, action_id: str) -> None:
    number = open_vote_in(conn, action_id)
    if number is not None:
        raise StateError(
            f"members are voting on it: proposal {number} (joint action {action_id[:16]})", field="action"
        )


register_decision("joint.sign", _Decision("sign"))
register_decision("joint.end", _Decision("end"))


class JointKeeper:
    """This co-op's joint actions: propose, sign, end, list, and what binds it now."""

    def __init__(
        self,
        store: Store,
        book: JointBook,
        joints: SqliteJointStore,
        *,
        self_id: str,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        federation: Callable[[], str | None] = lambda: None,
        known: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.store = store
        self.book = book
        self.joints = joints
        self.self_id = self_id
        self.clock = clock
        self.signer = signer
        self.federation = federation
        self.known = known  # the co-ops this node knows: the roster's members and the pinned peers
        # Called when what binds this co-op changed (the node issues a manifest: it declares it).
        self.changed: Callable[[], object] = lambda: None
        self._lock = threading.Lock()
        self._cache: tuple[object, dict[str, JointRules]] | None = None
        self._checked: tuple[float, int, int] = (-_MARKER_SECONDS, -1, -1)  # monotonic, generation, minute
        _KEEPERS[_database_path(store)] = self

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ActionView]:
        return self.book.views(now=self.clock())

    def view(self, action_id: str) -> ActionView:
        try:
            return self.book.view(action_id)
        except KeyError:
            raise NotFoundError(f"no joint action {action_id[:70]}", field="action") from None

    def bound_here(self, view: ActionView) -> bool:
        """Whether the action binds this co-op now: in force, and this co-op signed it."""
        return view.binds(self.self_id)

    def all_rules(self) -> dict[str, JointRules]:
        """Co-op id -> what binds it now (cached on the store's marker and the minute)."""
        now = self.clock()
        minute = now // _RULES_SECONDS
        cached = self._cache
        checked, generation = self._checked, self.joints.generation
        moment = time.monotonic()
        if (
            cached is not None
            and moment - checked[0] < _MARKER_SECONDS
            and (checked[1], checked[2]) == (generation, minute)
        ):
            return cached[1]
        key = (self.joints.marker(), minute)
        if cached is None or cached[0] != key:
            with self._lock:
                cached = (key, self.book.rules(now=now))
                self._cache = cached
        self._checked = (moment, generation, minute)
        return cached[1]

    def rules(self) -> JointRules:
        """What binds this co-op now (empty: nothing)."""
        return self.all_rules().get(self.self_id, JointRules())

    def declared(self) -> ManifestJoint | None:
        """What binds this co-op now that holds its records in beyond it (freeze, embargoes,
        evaluation-only), as its manifests declare it to peers; None: nothing."""
        rules = self.rules()
        if not (rules.freeze or rules.embargoes or rules.eval_only_since is not None):
            return None
        actions = []
        for action_id in rules.actions:
            try:
                kind = self.book.view(action_id).action.kind
            except KeyError:
                continue
            if kind in _TRAVEL_KINDS:
                actions.append(action_id)
        return ManifestJoint(
            freeze=rules.freeze,
            embargoes=rules.embargoes,
            eval_only_since=rules.eval_only_since,
            actions=tuple(sorted(actions)),
        )

    def open_vote(self, action_id: str) -> int | None:
        """The open proposal of this co-op deciding to sign or end the action, if any."""
        try:
            full = self.book.view(action_id).id
        except KeyError:
            return None
        return self.store.read(lambda c: open_vote_in(c, full))

    # -- changing --------------------------------------------------------------------------

    def propose(
        self,
        *,
        kind: JointKind | str,
        reason: str,
        threshold: int,
        coops: Iterable[str],
        actor: Actor,
        selector: JointSelector | None = None,
        ai_use: str | None = None,
        condition: str | None = None,
        monthly_records: int | None = None,
        starts_at: int | None = None,
        ends_at: int | None = None,
        review_at: int | None = None,
    ) -> tuple[ActionView, ProposalView | None]:
        """A new joint action, signed by this node as its proposer; then this co-op decides to
        sign it as :meth:`sign` does (an admin alone, or a proposal to vote on)."""
        if not actor.admin:
            raise ForbiddenError("only the co-op's admins propose joint actions", field="actor")
        now = self.clock()
        given = [c.strip().lower() for c in coops]
        known = {*self.known(), self.self_id}
        for index, coop in enumerate(given):
            if coop not in known:
                raise InputError(
                    f"unknown co-op {coop[:16]}…: pin it (coop peers add) or admit it to the roster first",
                    field=f"coops[{index}]",
                )
        named = sorted({*given, self.self_id})
        try:
            action = JointAction(
                federation=self.federation(),
                proposer=self.self_id,
                kind=JointKind(kind),
                selector=selector or JointSelector(),
                ai_use=ai_use,
                condition=condition,
                monthly_records=monthly_records,
                reason=reason.strip(),
                starts_at=now if starts_at is None else starts_at,
                ends_at=ends_at,
                review_at=review_at,
                threshold=threshold,
                coops=tuple(named),
                created_at=now,
                nonce=secrets.token_hex(16),
            )
            data = make_action(action, self.signer())
            self.joints.actor = actor.name
            try:
                opened = self.book.offer_action(data)
            finally:
                self.joints.actor = "gossip"
        except (JointError, GovernanceError) as exc:
            raise InputError(exc.message, field=exc.field or "action") from None
        except ValueError as exc:  # not a kind
            raise InputError(str(exc), field="kind") from None
        self._audit(
            AuditAction.JOINT_PROPOSE,
            actor.name,
            {"action": opened.id, "kind": action.kind.value, "threshold": threshold, "coops": len(named)},
        )
        return self._decide(opened.id, "sign", actor)

    def sign(self, action_id: str, *, actor: Actor) -> tuple[ActionView, ProposalView | None]:
        """This co-op signs the action: now (an admin, where the kind's rule lets one act alone),
        else a proposal ``{"joint.sign": id}`` is opened and the node signs when it passes."""
        return self._decide(action_id, "sign", actor)

    def end(self, action_id: str, *, actor: Actor) -> tuple[ActionView, ProposalView | None]:
        """This co-op signs the end of an action it signed (as :meth:`sign` decides)."""
        return self._decide(action_id, "end", actor)

    def check(self, view: ActionView, decision: str) -> None:
        """Refuse what this co-op could not state about the action now."""
        if self.self_id not in view.action.coops:
            raise StateError(f"joint action {view.id[:16]} does not name this co-op", field="action")
        signed = any(coop == self.self_id for coop, _, _ in view.signers)
        if decision == "sign":
            if signed:
                raise StateError(f"this co-op already signed joint action {view.id[:16]}", field="action")
            if view.status.past:
                raise StateError(f"joint action {view.id[:16]} is {view.status.value}", field="action")
        else:
            # The proposer withdraws its action while it is pending by signing its end.
            withdraws = view.action.proposer == self.self_id and view.status is ActionStatus.PENDING
            if not signed and not withdraws:
                raise StateError(
                    f"only a co-op that signed joint action {view.id[:16]} may end it", field="action"
                )
            if any(coop == self.self_id for coop, _, _ in view.enders):
                raise StateError(f"this co-op already signed the end of {view.id[:16]}", field="action")
            if view.status.past:
                raise StateError(f"joint action {view.id[:16]} is {view.status.value}", field="action")

    def state_in(
        self, conn: sqlite3.Connection, action_id: str, decision: str, *, at: int, via: str, actor: str
    ) -> None:
        """Sign this co-op's statement and keep it (in the caller's transaction), audited."""
        view = self.view(action_id)
        self.check(view, decision)
        statement = Statement(action=view.id, coop=self.self_id, decision=decision, at=at, via=via)  # type: ignore[arg-type]
        data = make_statement(statement, self.signer())
        conn.execute(
            "INSERT OR IGNORE INTO joint_statements (action, coop, decision, envelope, at, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (view.id, self.self_id, decision, data, at, at),
        )
        self.joints.generation += 1
        action = AuditAction.JOINT_SIGN if decision == "sign" else AuditAction.JOINT_END
        audit(
            conn,
            signer=self.signer(),
            at=at,
            actor=actor,
            action=action,
            payload={"action": view.id, "via": via},
        )

    def note(self) -> builtins.list[str]:
        """Audit each action that newly binds this co-op (``joint.effective``) or no longer does
        (``joint.ended``), as seen here; returns the ids noted.  Called after each gossip round
        and change (never from a read: reads may run inside a write)."""
        bound = set(self.rules().actions)
        now = self.clock()
        views = {v.id: v for v in self.book.views(now=now)}

        def write(conn: sqlite3.Connection) -> builtins.list[str]:
            noted: builtins.list[str] = []
            seen = {
                (str(action), str(aid))
                for action, aid in conn.execute(
                    "SELECT action, json_extract(payload, '$.action') FROM audit_log"
                    " WHERE action IN ('joint.effective', 'joint.ended')"
                )
            }
            for aid in sorted(bound):
                if ("joint.effective", aid) not in seen:
                    noted.append(aid)
                    self._audit_in(conn, AuditAction.JOINT_EFFECTIVE, aid, now)
            for action, aid in sorted(seen):
                view = views.get(aid)
                if action == "joint.effective" and aid not in bound and ("joint.ended", aid) not in seen:
                    if view is not None and view.status is ActionStatus.SCHEDULED:
                        continue
                    noted.append(aid)
                    status = "gone" if view is None else view.status.value
                    self._audit_in(conn, AuditAction.JOINT_ENDED, aid, now, status=status)
            return noted

        noted = self.store.write(write)
        if noted:
            # What binds this co-op changed: it is news for its peers (a new manifest says it).
            try:
                self.changed()
            except NodeError as exc:
                log.warning("joint actions changed; the manifest saying so waits: %s", exc.message)
        return noted

    # -- helpers ---------------------------------------------------------------------------

    def _decide(self, action_id: str, decision: str, actor: Actor) -> tuple[ActionView, ProposalView | None]:
        view = self.view(action_id)
        self.check(view, decision)
        kind_class = KIND_CLASS[view.action.kind]
        now = self.clock()
        path = f"joint.{decision}"

        def write(conn: sqlite3.Connection) -> ProposalView | None:
            _refuse_open_vote(conn, view.id)  # one vote at a time on an action: no duplicate
            rule = current_settings(conn).settings.rules.rule(kind_class)
            if actor.admin and rule.admin_alone:
                self.state_in(conn, view.id, decision, at=now, via="admin", actor=actor.name)
                return None
            words = "sign" if decision == "sign" else "end"
            reason = f"{words} joint action {view.id[:16]} ({view.action.kind.value}): {view.action.reason}"
            return open_proposal(
                conn,
                changes={path: view.id},
                reason=reason[:_REASON_CHARS],
                actor=actor,
                at=now,
                signer=self.signer(),
            )

        proposal = self.store.write(write)
        self.joints.generation += 1  # committed: read the rules again now
        self.note()
        return self.view(view.id), proposal

    def _audit(self, action: AuditAction, actor: str, payload: dict[str, Any]) -> None:
        now, signer = self.clock(), self.signer()
        self.store.write(
            lambda c: audit(c, signer=signer, at=now, actor=actor, action=action, payload=payload)
        )

    def _audit_in(
        self, conn: sqlite3.Connection, action: AuditAction, aid: str, now: int, **more: str
    ) -> None:
        audit(
            conn, signer=self.signer(), at=now, actor="system", action=action, payload={"action": aid, **more}
        )


def _database_path(store: Store) -> str:
    return str(Path(store.path).resolve())


def joint_keys(
    self_id: str,
    signer: Callable[[], Signer],
    trusted_keys: Callable[[], Mapping[str, str]],
    roster_members: Callable[[], Iterable[tuple[str, str]]],
) -> Callable[[], dict[str, str]]:
    """Node id -> key hex whom this node trusts for joint documents: the roster's members, the
    pinned peers (their current key), and itself."""

    def keys() -> dict[str, str]:
        out = dict(roster_members())
        out.update({origin: key for key, origin in trusted_keys().items()})
        out[self_id] = signer().public_key.hex()
        return out

    return keys
