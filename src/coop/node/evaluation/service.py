"""The node's local evaluation interface: where federated evaluation meets the data.

Flower's ClientApp is code the *requester* ships; it never touches the data.
It can only call this interface (a loopback-only, token-authenticated HTTP
endpoint of ``coop serve``), and the node decides everything here: the
request's signature and target, the quality freeze and embargo, the eval
policy (allowlist, admin approval, minimum records, noise and budget), which
records are eligible (accepted, not withdrawn, eval consent ``y``, matching
the filters, whatever their scope), and which evaluator runs.  The evaluator
runs in a child process under the node's ``[eval]`` limits (model size, time,
memory, priority, threads; :mod:`coop.node.evaluation.sandbox`): nothing of the
requester's model is loaded in the node's own process.  Only integer
statistics leave, in an attestation the node signs.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from coop.eval import (
    Attestation,
    Decline,
    NodeAnswer,
    Noise,
    Randomness,
    RequestProblem,
    RequestRefusedError,
    SystemRandomness,
    UnknownEvaluatorError,
    VerifiedRequest,
    add_noise,
    budget_left,
    get_evaluator,
    open_request,
    seal_attestation,
)
from coop.governance import (
    Approval,
    Audience,
    JointRules,
    NoiseKind,
    Record,
    RecordState,
    Settings,
    Signer,
    disclose,
)
from coop.node.collective.audit import AuditAction, audit
from coop.node.config import EvalConfig
from coop.node.evaluation import repository as requests_db
from coop.node.evaluation.repository import EvalRequestView
from coop.node.evaluation.sandbox import Sandbox
from coop.node.policy import facts_from_record, own_state
from coop.node.storage.store import Store

__all__ = ["EvalRequestView", "Evaluation", "ensure_eval_token"]

log = logging.getLogger("coop.eval")

_RECORD: Final = msgspec.json.Decoder(Record)
# How a child's failure is told to the requester (its message says more).
_CHILD_DECLINES: Final[dict[str, Decline]] = {
    "artifact": Decline.MALFORMED_ARTIFACT,
    "unknown_task": Decline.UNKNOWN_TASK,
    "memory": Decline.LIMIT_EXCEEDED,
    "time": Decline.LIMIT_EXCEEDED,
    "failed": Decline.EVALUATOR_FAILED,
}


def ensure_eval_token(path: Path) -> str:
    """The secret the SuperNode presents to the local interface (created once, mode 0600)."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
        finally:
            os.close(fd)
    return path.read_text(encoding="ascii").strip()


class Evaluation:
    """Answers evaluation requests for one node.

    ``node_id`` and ``coop`` name the node in its attestations, ``signer`` gives the key that
    signs them now, ``settings`` reads the co-op's current settings (eval policy, switches),
    ``token_path`` holds the secret the SuperNode presents, and ``limits`` (the node config's
    ``[eval]``) bound what one evaluation may take.
    """

    def __init__(
        self,
        store: Store,
        *,
        token_path: Path,
        node_id: str,
        coop: str,
        clock: Callable[[], int],
        signer: Callable[[], Signer],
        settings: Callable[[], Settings],
        limits: EvalConfig | None = None,
        joint: Callable[[], JointRules] = JointRules,
    ) -> None:
        self.store = store
        self.joint = joint  # what the joint actions binding the co-op demand now
        self.limits = limits if limits is not None else EvalConfig()
        # Each evaluation runs in a child process of its own; tests may swap in another worker.
        self.sandbox = Sandbox(self.limits)
        self.node_id = node_id
        self.coop = coop
        self.clock = clock
        self.signer = signer
        self.settings = settings
        self.token_path = token_path
        self.token = ensure_eval_token(self.token_path)
        # Noise comes from the OS's cryptographic generator; tests may swap in a seeded source.
        self.rng: Randomness = SystemRandomness()

    def answer(self, envelope: bytes, artifact: bytes) -> NodeAnswer:
        node_id = self.node_id
        now = self.clock()
        cap = self.limits.max_model_mb * 1024 * 1024
        if len(artifact) > cap:
            return self._too_large(envelope, len(artifact), now)
        try:
            verified = open_request(envelope, now=now, artifact=artifact)
        except RequestRefusedError as exc:
            reason = (
                Decline.MODEL_HASH_MISMATCH
                if exc.problem is RequestProblem.MODEL_HASH_MISMATCH
                else Decline.BAD_REQUEST
            )
            return self._decline(None, reason, exc.message, now)
        request = verified.request
        self._remember(verified, now)
        if node_id not in request.targets:
            return self._decline(
                verified, Decline.NOT_TARGETED, "this co-op is not named in the request", now
            )
        settings = self.settings()
        policy = settings.eval_policy
        if settings.quality_freeze:
            return self._decline(verified, Decline.QUALITY_FREEZE, "the co-op's quality freeze is on", now)
        if settings.embargo.whole:
            return self._decline(verified, Decline.EMBARGO, "the co-op's embargo is on", now)
        if policy.requester_allowlist and request.requester not in policy.requester_allowlist:
            return self._decline(
                verified, Decline.NOT_ALLOWED, "the requester is not on the co-op's allowlist", now
            )
        status = self._status(verified.hash)
        if status == "refused":
            return self._decline(
                verified, Decline.NOT_ALLOWED, "an admin of the co-op refused this request", now
            )
        if policy.approval is Approval.ADMIN and status != "approved":
            return self._decline(
                verified,
                Decline.AWAITING_APPROVAL,
                f"an admin must approve request {verified.hash[:16]}",
                now,
            )
        try:
            evaluator = get_evaluator(request.task)
        except UnknownEvaluatorError as exc:
            return self._decline(verified, Decline.UNKNOWN_TASK, exc.message, now)
        records = list(self._eligible(verified))
        if len(records) < policy.min_records:
            detail = f"{len(records)} eligible records; the co-op answers from {policy.min_records}"
            return self._decline(verified, Decline.TOO_FEW_RECORDS, detail, now)
        cost = 0 if policy.noise is NoiseKind.NONE else policy.epsilon_milli
        spent = self._spent(request.requester)
        if cost and not budget_left(policy.budget_milli, spent, cost):
            return self._decline(
                verified, Decline.BUDGET_SPENT, "this requester's privacy budget is spent", now
            )
        outcome = self.sandbox.run(request.task, artifact, [msgspec.json.encode(r) for r in records])
        if outcome.statistics is None:
            reason, detail = _CHILD_DECLINES.get(outcome.kind, Decline.EVALUATOR_FAILED), outcome.message
            if cost and outcome.kind not in ("artifact", "unknown_task"):
                # Whether a model fails on the records (time, memory, an error) depends on them: a
                # crafted model could learn a bit per request, so a failure costs what an answer does.
                self.store.write(
                    lambda c: requests_db.spend_budget(
                        c, request.requester, cost=cost, budget=policy.budget_milli
                    )
                )
            return self._decline(verified, reason, detail[:300] or outcome.kind, now)
        statistics = outcome.statistics
        noisy = add_noise(
            statistics,
            evaluator.statistic_sensitivity(),
            kind=policy.noise,
            epsilon_milli=policy.epsilon_milli,
            rng=self.rng,
        )
        attestation = Attestation(
            node_id=node_id,
            request_hash=verified.hash,
            task=request.task,
            model_sha256=request.model_sha256,
            # The count that leaves is the (noised) statistic n; an evaluator without one sends no
            # exact count when the co-op adds noise.
            records=noisy.get("n", len(records) if cost == 0 else 0),
            statistics=noisy,
            noise=Noise(kind=policy.noise.value, epsilon_milli=cost),
            issued_at=now,
            coop=self.coop,
            publication=policy.publication.value,
        )
        signer = self.signer()
        sealed = seal_attestation(attestation, signer)

        def write(conn: sqlite3.Connection) -> bool:
            if cost and not requests_db.spend_budget(
                conn, request.requester, cost=cost, budget=policy.budget_milli
            ):
                return False
            requests_db.record_answer(
                conn, verified.hash, at=now, outcome="answered", records=len(records), detail=None
            )
            audit(
                conn,
                signer=signer,
                at=now,
                actor=f"requester {request.requester[:16]}",
                action=AuditAction.EVAL_ANSWER,
                payload={
                    "request": verified.hash,
                    "task": request.task,
                    "records": len(records),
                    "noise": cost,
                },
            )
            return True

        if not self.store.write(write):
            return self._decline(
                verified, Decline.BUDGET_SPENT, "this requester's privacy budget is spent", now
            )
        log.info(
            "answered evaluation %s (%s) over %d records", verified.hash[:16], request.task, len(records)
        )
        return NodeAnswer(node_id=node_id, attestation=sealed.decode())

    def _decline(
        self, verified: VerifiedRequest | None, reason: Decline, detail: str, now: int
    ) -> NodeAnswer:
        log.warning(
            "declined evaluation %s: %s (%s)", verified.hash[:16] if verified else "-", reason.value, detail
        )
        if verified is not None:
            self.store.write(
                lambda c: requests_db.record_answer(
                    c, verified.hash, at=now, outcome=reason.value, records=0, detail=detail
                )
            )
        return NodeAnswer(node_id=self.node_id, decline=reason, detail=detail, coop=self.coop)

    def _too_large(self, envelope: bytes, size: int, now: int) -> NodeAnswer:
        """Decline a model over ``eval.max_model_mb`` before hashing or loading any of it."""
        try:
            verified: VerifiedRequest | None = open_request(envelope, now=now)
        except RequestRefusedError:
            verified = None  # declined all the same; an unverified request is not remembered
        if verified is not None:
            self._remember(verified, now)
        mb = self.limits.max_model_mb
        detail = f"the model is {size} bytes; this co-op evaluates models up to eval.max_model_mb = {mb} MB"
        return self._decline(verified, Decline.MODEL_TOO_LARGE, detail, now)

    def _remember(self, verified: VerifiedRequest, now: int) -> None:
        self.store.write(lambda c: requests_db.remember_request(c, verified, now))

    def _status(self, digest: str) -> str | None:
        return self.store.read(lambda c: requests_db.request_status(c, digest))

    def _spent(self, requester: str) -> int:
        return self.store.read(lambda c: requests_db.spent_budget(c, requester))

    def _eligible(self, verified: VerifiedRequest) -> Iterator[Record]:
        """Accepted or released, not withdrawn, eval consent y, outside any embargo, matching the filters."""
        state = own_state(self.settings(), joint=self.joint())
        filters = verified.request.filters
        rows = self.store.read(requests_db.eligible_rows)
        for data, standing in rows:
            if data is None:
                continue
            record = _RECORD.decode(data)
            facts = facts_from_record(record, state=RecordState(standing), admitted=standing == "released")
            if not disclose(facts, state, Audience.EVAL):
                continue
            if filters.matches(record):
                yield record

    # -- admins -------------------------------------------------------------------------------

    def requests(self) -> list[EvalRequestView]:
        now = self.clock()
        return self.store.read(lambda c: requests_db.list_requests(c, now=now))

    def decide(self, digest: str, *, approve: bool, admin: str) -> EvalRequestView:
        now = self.clock()
        signer = self.signer()

        def write(conn: sqlite3.Connection) -> None:
            requests_db.decide_request(conn, digest, approve=approve, admin=admin)
            audit(
                conn,
                signer=signer,
                at=now,
                actor=admin,
                action=AuditAction.EVAL_APPROVED if approve else AuditAction.EVAL_REFUSED,
                payload={"request": digest},
            )

        self.store.write(write)
        return next(r for r in self.requests() if r.hash == digest)
