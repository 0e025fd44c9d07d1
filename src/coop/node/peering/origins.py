"""What this node holds of other co-ops, as its pages and API show it: origins, manifests, mirrors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from coop.governance import Audience, CollectiveState, Embargo, JointRules, disclose
from coop.node.errors import NotFoundError
from coop.node.peering.listing import envelope_at, manifest_rows, mirrored_rows, origin_rows
from coop.node.policy import mirror_facts, origin_states
from coop.node.storage.store import Store

__all__ = ["OriginView", "Origins"]


class OriginView(msgspec.Struct, frozen=True):
    origin: str
    coop: str
    seq: int
    hash: str
    key: str
    forked: bool
    embargo_whole: bool
    entries: int
    mirrored: int
    updated_at: int
    self: bool
    # The collective switches its latest manifest declares (what peers honour for its records).
    embargo: Embargo = Embargo()
    quality_freeze: bool = False


class Origins:
    """The origins this node's book holds (``self_id`` is this node's own)."""

    def __init__(
        self, store: Store, *, self_id: str, joint: Callable[[], Mapping[str, JointRules]] = dict
    ) -> None:
        self.store = store
        self.self_id = self_id
        self.joint = joint  # co-op id -> what the joint actions binding it demand now

    def origins(self) -> list[OriginView]:
        states = self.store.read(origin_states)
        rows = self.store.read(origin_rows)
        return [
            OriginView(
                origin=r[0],
                coop=r[1],
                seq=r[2],
                hash=r[3],
                key=r[4],
                forked=bool(r[5]),
                embargo_whole=bool(r[6]),
                updated_at=r[7],
                entries=r[8],
                mirrored=r[9],
                self=r[0] == self.self_id,
                embargo=states[r[0]].embargo if r[0] in states else Embargo(),
                quality_freeze=states[r[0]].quality_freeze if r[0] in states else False,
            )
            for r in rows
        ]

    def manifests(self, origin: str) -> list[dict[str, Any]]:
        rows = self.store.read(lambda c: manifest_rows(c, origin))
        if not rows:
            raise NotFoundError(f"no manifests from {origin}", field="origin")
        return [
            {"seq": r[0], "hash": r[1], "in_chain": bool(r[2]), "evidence": bool(r[3]), "received_at": r[4]}
            for r in rows
        ]

    def envelope(self, origin: str, seq: int) -> bytes:
        found = self.store.read(lambda c: envelope_at(c, origin, seq))
        if found is None:
            raise NotFoundError(f"no manifest {seq} from {origin}", field="seq")
        return found

    def mirrored(
        self, origin: str, *, after: str = "", limit: int = 200, audience: Audience = Audience.FEDERATED
    ) -> list[dict[str, str]]:
        """The records of ``origin`` held here, as ``audience`` may see them listed (no content).

        The public sees what a federated release may carry; this co-op's admins see every row.
        """
        rows = self.store.read(lambda c: mirrored_rows(c, origin, after, limit))
        keys = ("uid", "hash", "license", "ai_use", "eval", "scope")
        joint = self.joint()
        state = self.store.read(lambda c: origin_states(c, joint=joint)).get(origin, CollectiveState())
        out = []
        for r in rows:
            # Listed under the record's own terms (its bytes), and only where the row agrees.
            facts = mirror_facts(origin, (r[0], *r[2:6]), bytes(r[6]))
            if disclose(facts, state, audience) if facts is not None else audience is Audience.ADMIN:
                out.append(dict(zip(keys, r[:6], strict=True)))
        return out
