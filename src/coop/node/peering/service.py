"""One node's peering, assembled: the parts below behind the one object the node hands out.

The rules live in :mod:`coop.federation` (the book, the protocol); the node's side is
split by concern, each built here from what it uses:

- :mod:`~coop.node.peering.books`: the book store in SQLite (every origin's chain,
  entries, tombstones and mirrored records) and the peering package's queries;
- :mod:`~coop.node.peering.peers`: the pinned peers, the pins the book trusts;
- :mod:`~coop.node.peering.issuance`: this node's own manifests and key rotation;
- :mod:`~coop.node.peering.rounds`: the gossip rounds this node starts;
- :mod:`~coop.node.peering.serving`: answering a peer's signed requests;
- :mod:`~coop.node.peering.origins`: what is held of other co-ops, for pages and the API;
- :mod:`~coop.node.peering.refusals` and :mod:`~coop.node.peering.nonces`: what was
  refused, and the nonces of accepted requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from coop.federation import ReplayCache, SyncReport
from coop.federation.joint import JointBook
from coop.federation.roster_gossip import RosterBook
from coop.governance import CollectiveState, JointRules, Signer
from coop.node.collective.settings import SettingsView
from coop.node.config import FederationConfig, NodeSection
from coop.node.peering.books import LockedBook, SqliteBookStore
from coop.node.peering.issuance import Issuer, IssueReport
from coop.node.peering.joint import JointKeeper, SqliteJointStore, joint_keys
from coop.node.peering.nonces import SqliteReplayCache
from coop.node.peering.origins import Origins, OriginView
from coop.node.peering.peers import Peers, PeerView
from coop.node.peering.roster import RosterKeeper, SqliteRosterStore
from coop.node.peering.rounds import Rounds
from coop.node.peering.serving import STEP_CAPS, Serving
from coop.node.policy import own_state
from coop.node.storage.datadir import DataDir
from coop.node.storage.store import Store

__all__ = ["STEP_CAPS", "FederationService", "IssueReport", "OriginView", "PeerView"]


class FederationService:
    """One node's federation: its book, its manifests, its peers and its gossip rounds.

    ``signer`` gives the key that signs now (a rotation switches it, then calls
    ``reload_identity`` so the owner reads the new one); ``settings`` reads the co-op's
    current collective settings.
    """

    def __init__(
        self,
        store: Store,
        data: DataDir,
        *,
        node_id: str,
        node: NodeSection,
        config: FederationConfig,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        settings: Callable[[], SettingsView],
        reload_identity: Callable[[], None],
    ) -> None:
        self.self_id = node_id
        self.settings = settings
        self.store = SqliteBookStore(store)
        self._lock = threading.RLock()
        self.book = LockedBook(node_id, {}, self.store, lock=self._lock)
        # Seen nonces live in the database: a captured request stays refused after a restart.
        self.replay: ReplayCache = SqliteReplayCache(store)
        # The federation roster (migration 18): its members are trusted like pins.
        self.roster_store = SqliteRosterStore(store, clock=clock, signer=signer)
        self.book.roster = RosterBook(self.roster_store)
        self.roster = RosterKeeper(
            store,
            self.book.roster,
            self.roster_store,
            self_id=node_id,
            coop=node.name,
            public_url=node.public_url,
            clock=clock,
            signer=signer,
        )
        self.pins = Peers(store, self.book, self.store, self_id=node_id, clock=clock, signer=signer)
        # Joint actions (migration 21): documents signed by the roster's members and the pins.
        self.joint_store = SqliteJointStore(store, self_id=node_id, clock=clock, signer=signer)
        joint_trust = joint_keys(node_id, signer, self.book.trusted_keys, self._roster_members)
        self.book.joint = JointBook(self.joint_store, keys=joint_trust, clock=clock)
        self.joint = JointKeeper(
            store,
            self.book.joint,
            self.joint_store,
            self_id=node_id,
            clock=clock,
            signer=signer,
            federation=self._federation_id,
            known=lambda: joint_trust().keys(),
        )
        self.issuer = Issuer(
            store,
            data,
            self.book,
            self.store,
            lock=self._lock,
            self_id=node_id,
            coop=node.name,
            lifetime_days=config.manifest_lifetime_days,
            clock=clock,
            signer=signer,
            settings=settings,
            federation=self.pins.federation,
            own_state=self.own_state,
            reload_identity=reload_identity,
        )
        self.issuer.roster_ref = self.roster.ref
        # What binds this co-op is declared in its manifests; a change of it is news.
        self.issuer.joint = self.joint.declared
        self.joint.changed = self.issuer.issue
        self.rounds = Rounds(
            store,
            data,
            self.book,
            self.pins,
            config=config,
            clock=clock,
            signer=signer,
            issue=self.issuer.issue,
        )
        self.serving = Serving(
            store,
            self.book,
            self.pins,
            self.replay,
            public_url=node.public_url,
            max_push_bytes=config.max_response_bytes,
            clock=clock,
            own_state=self.own_state,
            joint_rules=self.joint.all_rules,
        )
        self.held = Origins(store, self_id=node_id, joint=self.joint.all_rules)
        # The operations the node's CLI, pages, API and scheduler call, each from its part.
        self.refresh_pins = self.pins.refresh_pins
        self.add_peer = self.pins.add_peer
        self.remove_peer = self.pins.remove_peer
        self.peers = self.pins.peers
        self.key_of = self.pins.key_of
        self.node_of = self.pins.node_of
        self.federation = self.pins.federation
        self.skewed_peers = self.pins.skewed_peers
        self.issue = self.issuer.issue
        self.own_fork = self.issuer.own_fork
        self.rotate_key = self.issuer.rotate_key
        self.settle_rotation = self.issuer.settle_rotation
        self.joint_rules = self.joint.all_rules
        self.fetch = self.serving.fetch
        self.admit = self.serving.admit
        self.handle = self.serving.handle
        self.step_cap = self.serving.step_cap
        self.origins = self.held.origins
        self.manifests = self.held.manifests
        self.envelope = self.held.envelope
        self.mirrored = self.held.mirrored
        self.store.reread_states()
        self.refresh_pins()

    def own_state(self) -> CollectiveState:
        """This co-op's collective state, as the disclosure policy reads it for its own records
        (with what the joint actions it signed demand now)."""
        return own_state(
            self.settings().settings, federation=frozenset(self.pins.federation()), joint=self.joint.rules()
        )

    def own_joint(self) -> JointRules:
        """What the joint actions this co-op signed demand of it now."""
        return self.joint.rules()

    def gossip_round(self, *, every_peer: bool = False) -> list[SyncReport]:
        """A gossip round (:meth:`Rounds.gossip_round`), then joint actions that began or ended
        binding this co-op are audited."""
        reports = self.rounds.gossip_round(every_peer=every_peer)
        self.joint.note()
        return reports

    def _roster_members(self) -> list[tuple[str, str]]:
        roster = self.book.roster
        current = None if roster is None else roster.current
        if roster is None or current is None or roster.frozen():
            return []
        return [(m.id, m.key) for m in current.roster.members]

    def _federation_id(self) -> str | None:
        roster = self.book.roster
        current = None if roster is None else roster.current
        return None if current is None else current.roster.federation
