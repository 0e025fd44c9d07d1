"""This node's side of a peer's request: authenticate it (RFC 9421), answer it, keep refusals.

A request is read only once its signature headers name a pinned peer's key and
verify (:meth:`Serving.admit`), and answered by the protocol's
:class:`~coop.federation.Responder`.  Record bytes go to the peer asking only as the
disclosure policy allows (:meth:`Serving.fetch`).  What is refused is kept
(:mod:`coop.node.peering.refusals`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

import msgspec

from coop.federation import Book, ReplayCache, Responder, authority_of, verify_request
from coop.federation.errors import ClockSkewError, RequestAuthError
from coop.federation.httpsig import check_signature_headers
from coop.federation.protocol import PushReport
from coop.governance import Audience, CollectiveState, JointRules, disclose
from coop.node.errors import PayloadTooLargeError
from coop.node.members.attribution import PublicForms
from coop.node.peering.listing import fetch_rows
from coop.node.peering.peers import Peers, note_contact, note_skew
from coop.node.peering.refusals import Refusal, keep_refusals, manifest_refusals, record_refusal
from coop.node.policy import mirror_facts, own_facts
from coop.node.storage.store import Store

__all__ = ["STEP_CAPS", "Serving"]

# The largest request body each protocol step takes, checked before it is read (``push`` carries
# manifests: up to ``federation.max_response_bytes``, as much as a pull may bring).  A summary
# is ~80 bytes, a records pull at most 256 hashes (~17 KB); a digest or a manifests pull holds
# ~150 bytes per origin a node knows of; a reconcile request is a table of at most 480 cells of
# 11 bytes, base64 (~7 KB).
STEP_CAPS: Final = {
    "summary": 4 * 1024,
    "digest": 4 * 1024 * 1024,
    "reconcile": 64 * 1024,
    "manifests": 4 * 1024 * 1024,
    # Roster versions and proposals: at most 16 of each, ~3 MiB together (a 1,000-member roster
    # is ~250 KB).
    "roster": 4 * 1024 * 1024,
    # Joint actions and statements: at most 64 actions of 8 KiB and 512 statements, base64.
    "joint": 4 * 1024 * 1024,
    "records": 256 * 1024,
}
_PUSH_REPORT: Final = msgspec.json.Decoder(PushReport)
_KEYID: Final = re.compile(r'keyid="([0-9a-f]{64})"')


class Serving:
    """Answers pinned peers' requests for one node.

    ``own_state`` is this co-op's collective state as the policy reads it; ``public_url`` is
    the address peers sign for; ``max_push_bytes`` caps a push (manifests).
    """

    def __init__(
        self,
        store: Store,
        book: Book,
        peers: Peers,
        replay: ReplayCache,
        *,
        public_url: str,
        max_push_bytes: int,
        clock: Callable[[], int],
        own_state: Callable[[], CollectiveState],
        joint_rules: Callable[[], Mapping[str, JointRules]] = dict,
    ) -> None:
        self.store = store
        self.book = book
        self.peers = peers
        self.replay = replay
        self.public_url = public_url
        self.max_push_bytes = max_push_bytes
        self.clock = clock
        self.own_state = own_state
        self.joint_rules = joint_rules  # co-op id -> what binds it now (the origins of mirrors)

    def fetch(self, hashes: list[str], *, requester: str | None = None) -> tuple[dict[str, bytes], list[str]]:
        """Record bytes for the peer ``requester``: what the disclosure policy lets go to it.

        Own records under this co-op's state (admitted by a cut, outside embargo and freeze,
        federation scope only to its federation: the roster's members once it has a roster, else
        the co-ops it pinned); mirrors under their origin's latest manifest (federation scope only
        to the co-ops it names, by list or by roster).  The rest is refused.
        """
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, bytes] = {}
        # Records stored before anonymity held carry the member's hash where the policy's form
        # has none; their listed hash pins those bytes, so they are withheld, never sent.
        forms = self.store.read(PublicForms.load)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            own, mirrored, states = self.store.read(
                partial(fetch_rows, chunk=chunk, joint=self.joint_rules())
            )
            mine = self.own_state()
            for digest, data, *row in own:
                facts = None if data is None else own_facts(row, bytes(data))
                if (
                    facts is not None
                    and disclose(facts, mine, Audience.PEER, requester=requester)
                    and not forms.changes(bytes(data))
                ):
                    found[digest] = bytes(data)
            for digest, origin, data, *row in mirrored:
                facts = mirror_facts(origin, row, bytes(data))
                state = states.get(origin)
                if (
                    digest not in found
                    and facts is not None
                    and state is not None
                    and disclose(facts, state, Audience.PEER, requester=requester)
                    and not forms.changes(bytes(data))
                ):
                    found[digest] = bytes(data)
        return found, [h for h in wanted if h not in found]

    def handle(
        self,
        step: str,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        listening: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bytes:
        """Authenticate a peer's request (RFC 9421) and answer it.

        A refused request or pushed manifest is kept (:mod:`coop.node.peering.refusals`): the
        security log, the peer's ``last_error`` and its recent refusals say what and why.

        The signature must cover one of this node's own addresses: its ``public_url`` or
        ``listening`` (the socket the request arrived on, when given).
        """
        now = self.clock()
        try:
            keyid = verify_request(
                method,
                url,
                headers,
                body,
                key_of=self.peers.key_of,
                now=now,
                replay=self.replay,
                authorities=self._authorities(listening),
            )
        except RequestAuthError as exc:
            self._refused_request(step, headers, exc, now=now, ip=ip, user_agent=user_agent)
            raise
        requester = self.peers.node_of(keyid)
        answer = Responder(self.book, self).handle(step, body, now=now, requester=requester)
        if requester is not None:
            # Booked under the peer's node id, which its signing key is not once it rotated.
            self.store.write(lambda c: note_contact(c, requester, None, now))
        if step == "push":
            rejected = _PUSH_REPORT.decode(answer).rejected
            if rejected:
                refused = manifest_refusals(
                    rejected, at=self.clock(), step="push", node_id=requester, keyid=keyid
                )
                self.store.write(partial(keep_refusals, refusals=refused, ip=ip, user_agent=user_agent))
        return answer

    def step_cap(self, step: str) -> int:
        """The largest request body a protocol step takes (a push carries manifests, the rest is small)."""
        return self.max_push_bytes if step == "push" else STEP_CAPS[step]

    def _authorities(self, listening: str | None) -> frozenset[str]:
        """The ``@authority`` values a peer's signature may cover: this node's ``public_url``,
        and ``listening`` (the socket the request arrived on), when given."""
        own = {authority_of(self.public_url)}
        if listening is not None:
            own.add(authority_of(listening))
        return frozenset(own)

    def admit(
        self,
        step: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        length: int | None,
        listening: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """What is checked before a peer's request body is read: the signature headers are well
        formed, name a pinned peer's key, verify (they cover the Content-Digest header, not the
        body) and are valid now (else :class:`RequestAuthError`), and the announced length is
        within the step's cap (else :class:`PayloadTooLargeError`)."""
        now = self.clock()
        try:
            sig = check_signature_headers(
                method,
                url,
                headers,
                key_of=self.peers.key_of,
                now=now,
                authorities=self._authorities(listening),
            )
        except RequestAuthError as exc:
            self._refused_request(step, headers, exc, now=now, ip=ip, user_agent=user_agent)
            raise
        cap = self.step_cap(step)
        if length is not None and length > cap:
            message = f"a {step} request is at most {cap} bytes (this one announced {length})"
            refusal = Refusal(
                at=now,
                step=step,
                reason="too_large",
                detail=message,
                node_id=self.peers.node_of(sig.keyid),
                keyid=sig.keyid,
            )
            self.store.write(partial(record_refusal, refusal=refusal, ip=ip, user_agent=user_agent))
            raise PayloadTooLargeError(message, field="body")

    def _refused_request(
        self,
        step: str,
        headers: Mapping[str, str],
        exc: RequestAuthError,
        *,
        now: int,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        # Only a signature that verified names who sent the request: anything else is kept
        # under no peer (the key id it claimed, for the record), so a stranger claiming a
        # peer's key id writes neither that peer's last_error, refusals nor clock skew.
        keyid = exc.signer or _claimed_keyid(headers)
        node_id = None if exc.signer is None else self.peers.node_of(exc.signer)
        offset = exc.offset if isinstance(exc, ClockSkewError) else None
        reason = "clock_skew" if offset is not None else "unauthenticated"
        refusal = Refusal(at=now, step=step, reason=reason, detail=exc.message, node_id=node_id, keyid=keyid)

        def write(conn: sqlite3.Connection) -> None:
            record_refusal(conn, refusal, ip=ip, user_agent=user_agent)
            if node_id is not None and offset is not None:
                # The signer's clock minus ours; kept as ours minus the peer's, like our own measures.
                note_skew(conn, node_id, -offset)

        self.store.write(write)


def _claimed_keyid(headers: Mapping[str, str]) -> str | None:
    """The key id a request's Signature-Input names (well-formed ids only), to say who was refused."""
    value = next((v for k, v in headers.items() if k.lower() == "signature-input"), "")
    match = _KEYID.search(value[:4096])
    return None if match is None else match.group(1)
