"""The protocol's ``joint`` step: joint actions and their statements, both ways, by digest.

Like the ``roster`` step (:mod:`coop.federation.protocol`): the node starting the exchange sends
its :class:`~coop.federation.joint.JointDigest`; the peer takes nothing yet, answers its own
digest and what the sender lacks by it; the sender keeps what verifies and, when the peer lacks
anything, sends that.  Each item is verified by the receiving book against its own trust (a
forged or unknown co-op's document is counted refused, never stored).  A peer without the step
(an older node answers 404) is left alone.  The book's digest also enters the summary
(:func:`joint_tag`): two nodes holding different joint actions are never "in sync".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from coop.federation.joint import JointBook, JointDigest, JointMessage
from coop.federation.transport import Response
from coop.governance import sha256_hex

__all__ = ["JointMessage", "answer_joint", "joint_tag", "sync_joint"]

_ENC: Final = msgspec.json.Encoder(order="sorted")


def joint_tag(joint: JointBook | None) -> str:
    """A hash of the book's digest ("" when it holds nothing: the summary stays as before)."""
    if joint is None:
        return ""
    digest = joint.digest()
    if not digest.actions and not digest.statements:
        return ""
    return sha256_hex(_ENC.encode((digest.actions, digest.statements)))


def answer_joint(joint: JointBook | None, message: JointMessage) -> JointMessage:
    """The responder's side: keep what the peer sent, answer its digest and what the peer lacks."""
    if joint is None:
        return JointMessage(digest=JointDigest(actions=(), statements=()))
    if message.actions or message.statements:
        joint.receive(message.actions, message.statements)
    actions, statements = joint.items_for(message.digest)
    return JointMessage(digest=joint.digest(), actions=tuple(actions), statements=tuple(statements))


def sync_joint(
    send: Callable[[str, bytes], Response],
    decode: Callable[[type[JointMessage], bytes], Any],
    joint: JointBook | None,
) -> None:
    """Our digest out, what we lack back, then what the peer lacks (when anything); ``decode``
    is the protocol's (it refuses malformed or too deeply nested answers)."""
    if joint is None:
        return
    mine = joint.digest()
    if not mine.actions and not mine.statements:
        # Nothing to offer: skip the round trip (most exchanges, where no co-op acts jointly).  A
        # peer holding actions offers them when it starts an exchange with us: it sends its
        # digest, we answer ours, and it sends what we lack.
        return
    response = send("joint", _ENC.encode(JointMessage(digest=mine)))
    if response.status != 200:
        return
    answer: JointMessage = decode(JointMessage, response.body)
    if answer.actions or answer.statements:
        joint.receive(answer.actions, answer.statements)
    ours = joint.digest()
    if (answer.digest.actions, answer.digest.statements) == (ours.actions, ours.statements):
        return
    actions, statements = joint.items_for(answer.digest)
    if actions or statements:
        reply = send(
            "joint",
            _ENC.encode(
                JointMessage(digest=joint.digest(), actions=tuple(actions), statements=tuple(statements))
            ),
        )
        if reply.status == 200:
            decode(JointMessage, reply.body)  # well-formed, or the exchange reports it
