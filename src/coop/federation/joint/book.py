"""What a node knows of joint actions: the verified documents, their status, who they bind.

:class:`JointBook` keeps actions and statements through a :class:`JointStore` (memory here,
SQLite in the node), verifies what it is offered (by this node or by gossip), and answers
purely from the stored documents and a clock: each action's status (:func:`assess`), the
views for pages, and :meth:`JointBook.rules`, what binds each co-op now.  Gossip carries a
:class:`JointMessage`: the sender's :class:`JointDigest` and the items the receiver lacks.

An action binds a co-op once ``threshold`` distinct named co-ops signed it (within 30 days of
its making), from its start until its end date, or until ``threshold`` of its signers signed
an end -- and only the co-ops that signed it.  After its review date a signer that signs an
end leaves (it is no longer bound); the action stays in force while ``threshold`` signers
remain.  Its proposer may withdraw it while it is pending by signing an end.

A hostile peer can re-sign a real payload with a wrong key or send what this node cannot
verify yet: such refusals are never "for good" (:class:`JointDigest.refused` names only
refusals that hold for every envelope of the payload).  What a node keeps is bounded: live
actions (not past) in all and per proposer, pending ones per proposer, and past ones are
pruned (:data:`PRUNE_NEVER_IN_FORCE`, :data:`PRUNE_PAST`).

Longer than ~500 lines on purpose: the book's state (maps kept incrementally, limits,
pruning, refusals) and the status rules it applies are one invariant; split, each half would
have to re-derive what the other keeps (the documents themselves are in ``documents``).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final, Protocol

import msgspec

from coop.federation.errors import JointError
from coop.federation.joint.documents import (
    SKEW,
    JointAction,
    OpenedAction,
    OpenedStatement,
    decode_action,
    decode_statement,
    open_action,
    open_statement,
)
from coop.governance import JointKind, JointRules, JointSelector

__all__ = [
    "LAPSE",
    "MAX_ACTIONS",
    "MAX_LIVE_PER_PROPOSER",
    "MAX_MESSAGE_ACTIONS",
    "MAX_MESSAGE_STATEMENTS",
    "MAX_PAST",
    "MAX_PENDING_PER_PROPOSER",
    "PRUNE_NEVER_IN_FORCE",
    "PRUNE_PAST",
    "ActionStatus",
    "ActionView",
    "JointBook",
    "JointDigest",
    "JointMessage",
    "JointReceipt",
    "JointStore",
    "MemoryJointStore",
    "assess",
    "rules_of",
]

DAY: Final = 86_400
LAPSE: Final = 30 * DAY  # a pending action lapses when k have not signed this long after its making
MAX_ACTIONS: Final = 1_000  # live actions (not past) kept in all
MAX_LIVE_PER_PROPOSER: Final = 32  # live actions (not past) kept per proposer
MAX_PENDING_PER_PROPOSER: Final = 4
MAX_PAST: Final = 2_000  # past actions kept for display (the oldest go first beyond this)
MAX_MESSAGE_ACTIONS: Final = 64
MAX_MESSAGE_STATEMENTS: Final = 512
MAX_REFUSED: Final = 128  # ids refused for good here, advertised so peers stop sending them
PRUNE_NEVER_IN_FORCE: Final = 7 * DAY  # a lapsed or withdrawn action is forgotten this long after
PRUNE_PAST: Final = 400 * DAY  # an ended or expired one is shown this long after its end

Signed = tuple[tuple[str, int, str], ...]  # (co-op, at, via), by time


class ActionStatus(enum.StrEnum):
    PENDING = "pending"  # fewer than k signed so far
    ACTIVE = "active"  # k signed and it has started: it binds its signers
    SCHEDULED = "scheduled"  # k signed; its start is still to come
    ENDED = "ended"  # k of its signers signed an end (or fewer than k remain after its review date)
    EXPIRED = "expired"  # its end date passed
    LAPSED = "lapsed"  # k did not sign within 30 days of its making
    WITHDRAWN = "withdrawn"  # its proposer signed an end while it was pending

    @property
    def past(self) -> bool:
        return self in _PAST


_PAST: Final = frozenset(
    {ActionStatus.ENDED, ActionStatus.EXPIRED, ActionStatus.LAPSED, ActionStatus.WITHDRAWN}
)


class ActionView(msgspec.Struct, frozen=True, kw_only=True):
    """One action as pages, the API and the CLI show it."""

    id: str
    action: JointAction
    status: ActionStatus
    signers: Signed
    enders: Signed
    effective_since: int | None
    ended_at: int | None
    left: tuple[str, ...] = ()  # signers that left after the review date (no longer bound)

    def binds(self, coop: str) -> bool:
        """Whether the action binds this co-op now (it is active, the co-op signed it and has
        not left it after the review date)."""
        return (
            self.status is ActionStatus.ACTIVE
            and coop not in self.left
            and any(c == coop for c, _, _ in self.signers)
        )


class JointDigest(msgspec.Struct, frozen=True):
    """What a node holds: action ids and statement keys (``action/coop/decision``), sorted.

    ``refused``: ids and keys refused for good here, for a fault that any envelope of the same
    payload (or key) has (expired, a co-op the action does not name, a sign after the end):
    not to be sent again.  Never a signature or an unknown key.
    """

    actions: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


class JointMessage(msgspec.Struct, frozen=True):
    digest: JointDigest = JointDigest()
    actions: tuple[bytes, ...] = ()
    statements: tuple[bytes, ...] = ()


class JointReceipt(msgspec.Struct, frozen=True):
    """What a gossip message brought: new actions and statements, known ones, refusals."""

    actions: int = 0
    statements: int = 0
    known: int = 0
    refused: tuple[str, ...] = ()  # why each refused item was refused (field: message)


class JointStore(Protocol):
    """Where the envelopes live, as received."""

    def actions(self) -> list[bytes]: ...

    def statements(self) -> list[bytes]: ...

    def add_action(self, action_id: str, data: bytes, *, received_at: int) -> bool:
        """Keep an action; False when it is known already."""

    def add_statement(
        self, action_id: str, coop: str, decision: str, data: bytes, *, at: int, received_at: int
    ) -> bool:
        """Keep a statement; False when one for (action, coop, decision) is known (the first stays)."""

    def drop_actions(self, action_ids: Collection[str]) -> int:
        """Forget these actions and every statement about them; how many actions were dropped."""

    def marker(self) -> object:
        """Something cheap that changes whenever the stored set does (another process may write)."""


class MemoryJointStore:
    def __init__(self) -> None:
        self._actions: dict[str, bytes] = {}
        self._statements: dict[tuple[str, str, str], bytes] = {}
        self._changes = 0

    def actions(self) -> list[bytes]:
        return list(self._actions.values())

    def statements(self) -> list[bytes]:
        return list(self._statements.values())

    def add_action(self, action_id: str, data: bytes, *, received_at: int) -> bool:
        del received_at
        if action_id in self._actions:
            return False
        self._actions[action_id] = data
        self._changes += 1
        return True

    def add_statement(
        self, action_id: str, coop: str, decision: str, data: bytes, *, at: int, received_at: int
    ) -> bool:
        del at, received_at
        if (action_id, coop, decision) in self._statements:
            return False
        self._statements[(action_id, coop, decision)] = data
        self._changes += 1
        return True

    def drop_actions(self, action_ids: Collection[str]) -> int:
        gone = set(action_ids)
        dropped = sum(self._actions.pop(i, None) is not None for i in gone)
        for key in [k for k in self._statements if k[0] in gone]:
            del self._statements[key]
        self._changes += 1
        return dropped

    def marker(self) -> object:
        return self._changes


class _RetryLaterError(JointError):
    """A refusal that may not hold later (the action is not here yet, a limit is full, a key
    is not known yet, a time still to come)."""


class _RefusedForGoodError(JointError):
    """A refusal that holds for every envelope of the payload (or statement key): advertised."""


class _Judged(msgspec.Struct, frozen=True):
    status: ActionStatus
    since: int | None = None
    ended: int | None = None
    left: frozenset[str] = frozenset()
    gone_at: int | None = None  # when a past action stopped (for pruning)


def _kth(times: Iterable[int], k: int) -> int | None:
    ordered = sorted(times)
    return ordered[k - 1] if len(ordered) >= k else None


def _judge(action: JointAction, signs: Mapping[str, int], ends: Mapping[str, int], *, now: int) -> _Judged:
    """Status, times and leavers of an action from who signed and ended it when (pure).

    A statement dated after ``now`` counts, at ``now`` (a co-op's clock may run ahead)."""
    k = action.threshold
    sign_t = {c: min(t, now) for c, t in signs.items()}
    end_t = {c: min(t, now) for c, t in ends.items()}
    lapse_at = action.created_at + LAPSE
    reached = _kth(sign_t.values(), k)
    in_time = reached is not None and reached < lapse_at
    withdrawn = end_t.get(action.proposer)
    if withdrawn is not None and withdrawn < lapse_at and (not in_time or withdrawn < (reached or 0)):
        return _Judged(ActionStatus.WITHDRAWN, ended=withdrawn, gone_at=withdrawn)
    if reached is None or not in_time:
        stop = lapse_at if action.ends_at is None else min(lapse_at, action.ends_at)
        if now >= stop:
            return _Judged(ActionStatus.LAPSED, gone_at=stop)
        return _Judged(ActionStatus.PENDING)
    since = max(action.starts_at, reached)
    signer_ends = {c: t for c, t in end_t.items() if c in sign_t}
    stops = []
    ended_k = _kth(signer_ends.values(), k)
    if ended_k is not None:
        stops.append(ended_k)
    left: frozenset[str] = frozenset()
    review = action.review_at
    if review is not None and now >= review and signer_ends:
        left = frozenset(signer_ends)
        leaving = sorted(max(t, review) for t in signer_ends.values())
        drop = len(sign_t) - k + 1  # the leave that leaves fewer than k bound
        if len(leaving) >= drop:
            stops.append(leaving[drop - 1])
    if stops:
        ended = min(stops)
        return _Judged(ActionStatus.ENDED, since if since < ended else None, ended, left, ended)
    if action.ends_at is not None and now >= action.ends_at:
        ends_at = action.ends_at
        return _Judged(ActionStatus.EXPIRED, since if since < ends_at else None, ends_at, left, ends_at)
    if now < action.starts_at:
        return _Judged(ActionStatus.SCHEDULED, since, None, left)
    return _Judged(ActionStatus.ACTIVE, since, None, left)


def assess(
    action: JointAction, signs: Mapping[str, int], ends: Mapping[str, int], *, now: int
) -> tuple[ActionStatus, int | None, int | None]:
    """An action's (status, effective since, ended at) from who signed and ended it when.

    ``signs``/``ends``: co-op -> the time it claims for its statement.  Pure.
    """
    judged = _judge(action, signs, ends, now=now)
    return judged.status, judged.since, judged.ended


def _is_end(data: bytes) -> bool:
    try:
        return decode_statement(data)[0].decision == "end"
    except JointError:
        return True


def _date(when: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def rules_of(actions: Iterable[JointAction]) -> JointRules:
    """What binding actions (in id order) demand of one co-op together (``actions`` left empty)."""
    freeze, embargoes = False, list[JointSelector]()
    since: int | None = None
    ai_use: str | None = None
    cap: int | None = None
    for action in actions:
        if action.kind is JointKind.FREEZE:
            freeze = True
        elif action.kind is JointKind.EMBARGO:
            embargoes.append(action.selector)
        elif action.kind is JointKind.EVAL_ONLY:
            since = action.starts_at if since is None else min(since, action.starts_at)
        elif action.kind is JointKind.PREFERENCE:
            ai_use = action.ai_use if ai_use is None else ai_use
        elif action.monthly_records is not None:
            cap = action.monthly_records if cap is None else min(cap, action.monthly_records)
    return JointRules(
        freeze=freeze, embargoes=tuple(embargoes), eval_only_since=since, ai_use=ai_use, monthly_records=cap
    )


class JointBook:
    """The joint actions one node knows, verified, and what they demand (thread-safe).

    ``keys()`` gives the verifier's trust (node id -> key hex: the roster's members, pinned
    peers, this node); ``clock()`` the time in seconds.  The store is read again when its
    marker changes (documents already decoded are not decoded again); documents read back from
    it were verified when they came in.  What this book adds goes into its maps as it is added.
    """

    def __init__(
        self, store: JointStore, *, keys: Callable[[], Mapping[str, str]], clock: Callable[[], int]
    ) -> None:
        self.store = store
        self._keys = keys
        self._clock = clock
        self._lock = threading.RLock()
        self._marker: object = object()
        self._actions: dict[str, OpenedAction] = {}
        self._signs: dict[str, dict[str, OpenedStatement]] = {}
        self._ends: dict[str, dict[str, OpenedStatement]] = {}
        self._by_proposer: dict[str, set[str]] = {}
        self._decoded: dict[bytes, OpenedAction | OpenedStatement] = {}
        self._refused: dict[str, None] = {}
        self.reload()

    # -- reading ---------------------------------------------------------------------------

    def reload(self, *, force: bool = False) -> None:
        """Read the store again when it changed (only envelopes not seen before are decoded)."""
        with self._lock:
            marker = self.store.marker()
            if not force and marker == self._marker:
                return
            seen = {} if force else self._decoded
            decoded: dict[bytes, OpenedAction | OpenedStatement] = {}
            self._actions, self._signs, self._ends, self._by_proposer = {}, {}, {}, {}
            for data in self.store.actions():
                opened = seen.get(data)
                if not isinstance(opened, OpenedAction):
                    try:
                        opened = decode_action(data)[0]
                    except JointError:
                        continue
                decoded[data] = opened
                self._put_action(opened)
            for data in self.store.statements():
                statement = seen.get(data)
                if not isinstance(statement, OpenedStatement):
                    try:
                        statement = decode_statement(data)[0]
                    except JointError:
                        continue
                decoded[data] = statement
                if statement.action in self._actions:
                    self._held(statement).setdefault(statement.coop, statement)
            self._decoded = decoded
            self._marker = marker

    def _put_action(self, opened: OpenedAction) -> None:
        self._actions[opened.id] = opened
        self._signs.setdefault(opened.id, {})
        self._ends.setdefault(opened.id, {})
        self._by_proposer.setdefault(opened.action.proposer, set()).add(opened.id)

    def _forget(self, action_ids: Iterable[str]) -> None:
        for action_id in action_ids:
            opened = self._actions.pop(action_id, None)
            if opened is None:
                continue
            self._decoded.pop(opened.envelope, None)
            for held in (self._signs.pop(action_id, {}), self._ends.pop(action_id, {})):
                for statement in held.values():
                    self._decoded.pop(statement.envelope, None)
            self._by_proposer.get(opened.action.proposer, set()).discard(action_id)

    def _held(self, statement: OpenedStatement) -> dict[str, OpenedStatement]:
        held = self._signs if statement.decision == "sign" else self._ends
        return held[statement.action]

    def _judge(self, action_id: str, now: int) -> _Judged:
        signs = {c: s.at for c, s in self._signs[action_id].items()}
        ends = {c: s.at for c, s in self._ends[action_id].items()}
        return _judge(self._actions[action_id].action, signs, ends, now=now)

    def views(self, *, now: int | None = None) -> list[ActionView]:
        """Every action known, oldest first."""
        with self._lock:
            self.reload()
            when = self._clock() if now is None else now
            ordered = sorted(self._actions.values(), key=lambda o: (o.action.created_at, o.id))
            return [self._view(o.id, when) for o in ordered]

    def view(self, action_id: str, *, now: int | None = None) -> ActionView:
        """One action by its id or a unique prefix of at least 8 hex digits (KeyError if none)."""
        with self._lock:
            self.reload()
            found = [action_id] if action_id in self._actions else []
            if not found and len(action_id) >= 8:
                found = [i for i in self._actions if i.startswith(action_id.lower())]
            if len(found) != 1:
                raise KeyError(action_id)
            return self._view(found[0], self._clock() if now is None else now)

    def _view(self, action_id: str, now: int) -> ActionView:
        judged = self._judge(action_id, now)

        def listed(held: dict[str, OpenedStatement]) -> Signed:
            return tuple(
                sorted(((s.coop, min(s.at, now), s.via) for s in held.values()), key=lambda t: (t[1], t[0]))
            )

        return ActionView(
            id=action_id,
            action=self._actions[action_id].action,
            status=judged.status,
            signers=listed(self._signs[action_id]),
            enders=listed(self._ends[action_id]),
            effective_since=judged.since,
            ended_at=judged.ended,
            left=tuple(sorted(judged.left)),
        )

    def rules(self, *, now: int | None = None) -> dict[str, JointRules]:
        """Co-op id -> what the actions binding it demand now (co-ops bound by nothing absent)."""
        with self._lock:
            self.reload()
            when = self._clock() if now is None else now
            binding: dict[str, list[str]] = {}
            for action_id in sorted(self._actions):
                judged = self._judge(action_id, when)
                if judged.status is ActionStatus.ACTIVE:
                    for coop in self._signs[action_id]:
                        if coop not in judged.left:
                            binding.setdefault(coop, []).append(action_id)
            out = {}
            for coop, ids in binding.items():
                rules = rules_of(self._actions[i].action for i in ids)
                out[coop] = msgspec.structs.replace(rules, actions=tuple(ids))
            return out

    # -- offering --------------------------------------------------------------------------

    def offer_action(self, data: bytes) -> OpenedAction:
        """Verify and keep an action (this node's or a peer's); :class:`JointError` if refused."""
        with self._lock:
            self.reload()
            now = self._clock()
            self._prune(now)
            return self._add_action(data, now, _Census(self, now))[0]

    def _add_action(
        self, data: bytes, now: int, census: _Census, carried: Mapping[str, set[str]] | None = None
    ) -> tuple[OpenedAction, bool]:
        """Check, verify and keep one action, into the maps as it goes (no reload)."""
        claimed = decode_action(data)[0]
        known = self._actions.get(claimed.id)
        if known is not None:
            return known, False
        action = claimed.action
        if action.ends_at is not None and action.ends_at <= now:
            raise _RefusedForGoodError("the end date has passed", field="ends_at")
        if action.created_at > now + SKEW:
            raise _RetryLaterError("the action claims to be made in the future", field="created_at")
        if now >= action.created_at + LAPSE and len((carried or {}).get(claimed.id, ())) < action.threshold:
            raise _RetryLaterError(
                "the action lapsed: fewer than its threshold signed it within 30 days", field="created_at"
            )
        opened = open_action(data, self._keys(), now=now)  # the signature (UnverifiedError)
        if census.total >= MAX_ACTIONS:
            raise _RetryLaterError(f"this node keeps at most {MAX_ACTIONS} joint actions", field="actions")
        proposer = action.proposer
        live, pending = census.of(proposer)
        if len(live) >= MAX_LIVE_PER_PROPOSER:
            raise _RetryLaterError(
                f"a co-op has at most {MAX_LIVE_PER_PROPOSER} joint actions not past", field="proposer"
            )
        if len(pending) >= MAX_PENDING_PER_PROPOSER:
            oldest = min(self._actions[i].action.created_at for i in pending) + LAPSE
            raise _RetryLaterError(
                f"a co-op has at most {MAX_PENDING_PER_PROPOSER} pending joint actions: its oldest"
                f" pending one lapses on {_date(oldest)} unless enough co-ops sign it, and"
                " `coop joint end` withdraws one",
                field="proposer",
            )
        if self.store.add_action(opened.id, data, received_at=now):
            self._marker = object()  # read the store again next time (another writer may be there)
        self._put_action(opened)
        self._decoded[data] = opened
        census.added(opened)
        return opened, True

    def offer_statement(self, data: bytes) -> OpenedStatement:
        """Verify and keep a co-op's sign or end; :class:`JointError` if refused."""
        with self._lock:
            self.reload()
            return self._add_statement(data, self._clock())[0]

    def _add_statement(self, data: bytes, now: int) -> tuple[OpenedStatement, bool]:
        claimed = decode_statement(data)[0]
        action = self._actions.get(claimed.action)
        if action is None:
            raise _RetryLaterError("the statement is about an action this node does not know", field="action")
        if claimed.coop not in action.action.coops:
            raise _RefusedForGoodError("the co-op is not one the action names", field="coop")
        if claimed.at > now + SKEW:
            raise _RetryLaterError("the statement claims a time in the future", field="at")
        known = self._held(claimed).get(claimed.coop)
        if known is not None and known.envelope == data:
            return known, False
        statement = open_statement(data, action, self._keys())  # the signature (UnverifiedError)
        if known is not None:
            return known, False
        status = self._judge(action.id, now).status
        if statement.decision == "sign" and status is ActionStatus.LAPSED:
            # A sign made in time may still come (by gossip, late): it may show k signed in time.
            if statement.at >= action.action.created_at + LAPSE:
                raise JointError("the action lapsed: it cannot be signed any more", field="action")
        elif statement.decision == "sign" and status.past:
            raise _RefusedForGoodError(
                f"the action is {status}: it cannot be signed any more", field="action"
            )
        withdraws = statement.coop == action.action.proposer and status is ActionStatus.PENDING
        if statement.decision == "end" and statement.coop not in self._signs[action.id] and not withdraws:
            raise _RetryLaterError(
                "only a co-op that signed the action can end it (its proposer may withdraw it while"
                " it is pending)",
                field="coop",
            )
        if self.store.add_statement(
            action.id, statement.coop, statement.decision, data, at=statement.at, received_at=now
        ):
            self._marker = object()
        self._held(statement)[statement.coop] = statement
        self._decoded[data] = statement
        return statement, True

    # -- keeping it bounded ----------------------------------------------------------------

    def prune(self, *, now: int | None = None) -> list[str]:
        """Forget past actions kept long enough (see :data:`PRUNE_NEVER_IN_FORCE`,
        :data:`PRUNE_PAST`, :data:`MAX_PAST`); the ids dropped."""
        with self._lock:
            self.reload()
            return self._prune(self._clock() if now is None else now)

    def _prune(self, now: int) -> list[str]:
        drop_actions = getattr(self.store, "drop_actions", None)
        if drop_actions is None:  # a store without deletes keeps everything
            return []
        past: list[tuple[int, str]] = []
        gone: list[str] = []
        for action_id in self._actions:
            judged = self._judge(action_id, now)
            if not judged.status.past:
                continue
            stop = judged.gone_at if judged.gone_at is not None else now
            never = judged.status in (ActionStatus.LAPSED, ActionStatus.WITHDRAWN)
            if now >= stop + (PRUNE_NEVER_IN_FORCE if never else PRUNE_PAST):
                gone.append(action_id)
            else:
                past.append((stop, action_id))
        if len(past) > MAX_PAST:
            past.sort()
            gone.extend(i for _, i in past[: len(past) - MAX_PAST])
        if gone:
            drop_actions(gone)
            self._forget(gone)
            self._marker = object()
        return gone

    # -- gossip ----------------------------------------------------------------------------

    def receive(self, actions: Iterable[bytes], statements: Iterable[bytes]) -> JointReceipt:
        """Take what a peer sent: each item verified on its own; one bad item refuses only itself.

        An action older than the lapse comes in only with enough signs in the same message (and
        is dropped again when they do not verify)."""
        new_actions = new_statements = known = 0
        refused: list[str] = []
        with self._lock:
            self.reload()
            now = self._clock()
            self._prune(now)
            census = _Census(self, now)
            # Signs before ends: an end counts only from a co-op whose sign is here.
            items = sorted(list(statements)[:MAX_MESSAGE_STATEMENTS], key=_is_end)
            carried: dict[str, set[str]] = {}
            for data in items:
                try:
                    claim = decode_statement(data)[0]
                except JointError:
                    continue
                if claim.decision == "sign":
                    carried.setdefault(claim.action, set()).add(claim.coop)
            late: list[str] = []
            for data in list(actions)[:MAX_MESSAGE_ACTIONS]:
                try:
                    opened, new = self._add_action(data, now, census, carried)
                except JointError as exc:
                    refused.append(self._refusal(exc, data, decode_action))
                    continue
                new_actions, known = new_actions + new, known + (not new)
                if new and now >= opened.action.created_at + LAPSE:
                    late.append(opened.id)
            for data in items:
                try:
                    new = self._add_statement(data, now)[1]
                except JointError as exc:
                    refused.append(self._refusal(exc, data, decode_statement))
                    continue
                new_statements, known = new_statements + new, known + (not new)
            lapsed = [i for i in late if self._judge(i, now).status is ActionStatus.LAPSED]
            if lapsed and getattr(self.store, "drop_actions", None) is not None:
                self.store.drop_actions(lapsed)
                self._forget(lapsed)
                self._marker = object()
                new_actions -= len(lapsed)
                refused.extend("created_at: the action lapsed: its signs did not verify" for _ in lapsed)
        return JointReceipt(
            actions=new_actions, statements=new_statements, known=known, refused=tuple(refused[:32])
        )

    def _refusal(
        self,
        exc: JointError,
        data: bytes,
        decode: Callable[[bytes], tuple[OpenedAction | OpenedStatement, object, bytes]],
    ) -> str:
        if isinstance(exc, _RefusedForGoodError):
            try:
                item = decode(data)[0]
            except JointError:
                item = None
            if item is not None:
                self._refused[item.id if isinstance(item, OpenedAction) else item.key] = None
                while len(self._refused) > MAX_REFUSED:
                    del self._refused[next(iter(self._refused))]
        return f"{exc.field}: {exc.message}"

    def digest(self) -> JointDigest:
        with self._lock:
            self.reload()
            keys = [s.key for held in (self._signs, self._ends) for by in held.values() for s in by.values()]
            return JointDigest(
                actions=tuple(sorted(self._actions)),
                statements=tuple(sorted(keys)),
                refused=tuple(self._refused),
            )

    def items_for(self, theirs: JointDigest) -> tuple[list[bytes], list[bytes]]:
        """Actions and statements a peer with this digest lacks (bounded); nothing it refused,
        and no past action (ended, expired, lapsed, withdrawn); the statements of the actions
        sent come first (signs first), then those of actions the peer holds."""
        with self._lock:
            self.reload()
            now = self._clock()
            skip = set(theirs.refused)
            theirs_held = set(theirs.actions)
            sent: list[str] = []
            for action_id in sorted(self._actions):
                if len(sent) >= MAX_MESSAGE_ACTIONS:
                    break
                if action_id in theirs_held or action_id in skip or self._judge(action_id, now).status.past:
                    continue
                sent.append(action_id)
            lacking = set(theirs.statements) | skip
            statements = [
                s.envelope
                for group in (sent, sorted(theirs_held & self._actions.keys()))
                for held in (self._signs, self._ends)
                for action_id in group
                for s in held[action_id].values()
                if s.key not in lacking
            ]
            return [self._actions[i].envelope for i in sent], statements[:MAX_MESSAGE_STATEMENTS]


class _Census:
    """Live (not past) actions now, in all and per proposer, counted once per call and kept
    up to date as actions are added (so a message of 64 is not 64 passes over the book)."""

    def __init__(self, book: JointBook, now: int) -> None:
        self._book = book
        self._now = now
        self._per: dict[str, tuple[set[str], set[str]]] = {}
        self.total = sum(1 for i in book._actions if not book._judge(i, now).status.past)

    def of(self, proposer: str) -> tuple[set[str], set[str]]:
        """(live ids, pending ids) of one proposer."""
        found = self._per.get(proposer)
        if found is None:
            live, pending = set[str](), set[str]()
            for action_id in self._book._by_proposer.get(proposer, ()):
                status = self._book._judge(action_id, self._now).status
                if not status.past:
                    live.add(action_id)
                if status is ActionStatus.PENDING:
                    pending.add(action_id)
            found = self._per[proposer] = (live, pending)
        return found

    def added(self, opened: OpenedAction) -> None:
        live, pending = self.of(opened.action.proposer)
        live.add(opened.id)
        pending.add(opened.id)  # a new action has no statements yet
        self.total += 1
