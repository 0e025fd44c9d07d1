"""The running node: data directory, config, store and the operations built on them.

The HTTP app, the CLI and the scheduler all act through :class:`Node`, so a
rule (a lock, a limit, a clock) lives in one place.

Longer than ~500 lines on purpose: :class:`Node` has one short method per operation the HTTP app,
the CLI and the scheduler share (each a lock, a clock and a call into its package).
"""

from __future__ import annotations

import functools
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coop.governance import ChainReport, Channel, Choice, Defaults, Settings, Signer, compute_payouts
from coop.node import metrics, policy
from coop.node.access import GatedAccess  # registers the access.grant decision
from coop.node.collective import audit as audit_log
from coop.node.collective import payouts as payout_files
from coop.node.collective import proposals
from coop.node.collective import settings as collective_settings
from coop.node.collective.audit import AuditAction
from coop.node.collective.audithead import HeadKeeper, latest_entry, read_head
from coop.node.collective.proposals import ProposalView
from coop.node.collective.settings import Actor, SettingsView
from coop.node.config import Config
from coop.node.contributions import retention, review, rights
from coop.node.contributions.pipeline import Accepted, process_entry
from coop.node.contributions.repository import BatchReport, Decision
from coop.node.contributions.submission import (
    ContributionRequest,
    ContributionState,
    EditRequest,
    IngestRequest,
    Submission,
    apply_edit,
    build_submission,
)
from coop.node.errors import ForbiddenError, StorageError
from coop.node.evaluation.published import EvalReports
from coop.node.evaluation.service import Evaluation, ensure_eval_token
from coop.node.intake.chat import Limits
from coop.node.members import attribution
from coop.node.members.accounts import Member
from coop.node.members.repository import members_without_pseudonym, stored_pseudonym
from coop.node.peering.joint import joint_decision_open
from coop.node.peering.service import FederationService
from coop.node.releases import catalog
from coop.node.releases.cut import cut_federated_release, cut_release
from coop.node.releases.model import ReleaseSummary
from coop.node.releases.repository import get_release
from coop.node.releases.revision import (
    RevisionReport,
    reform_pending,
    reform_releases,
    revise_releases,
    revision_pending,
)
from coop.node.releases.statement import store_missing_statements, unsigned_releases
from coop.node.releases.tombstones import withdrawn_uids
from coop.node.storage import upgrade
from coop.node.storage.datadir import DataDir, Identity
from coop.node.storage.store import Store

if TYPE_CHECKING:
    from coop.node.channels.review import Settled

__all__ = ["Node"]

log = logging.getLogger("coop.node")

_MAX_BATCHES_PER_RUN = 10_000
_CUT_WAIT = 10.0


class Node:
    """One co-op node opened from its data directory."""

    def __init__(self, root: Path) -> None:
        self.data = DataDir.open(root)
        self.config: Config = self.data.config()
        self.identity: Identity = self.data.identity()
        self.salt = self.data.salt()
        self.signer: Signer = Signer(bytes(self.data.signing_key()))
        self._settings: SettingsView | None = None
        self.store = Store(self.data.db_path, synchronous=self.config.storage.synchronous)
        # After every commit that appended to the audit log, its signed head moves forward.
        self.store.writer.after_commit = HeadKeeper(
            self.data, lambda: self.signer, self.store.read(latest_entry)
        )
        self.limits = Limits(
            max_messages=self.config.limits.max_messages,
            max_message_chars=self.config.limits.max_message_chars,
        )
        if self.data.staged_key_path.exists():
            self.federation.settle_rotation()  # a key rotation a crash cut short
        now = self.now()
        # Keys that moved out of node.toml ([defaults]) are read once: into the database, then
        # out of the file (coop.node.storage.upgrade).
        moved = upgrade.read_moved_config(self.data.config_path)
        if moved:
            initial = moved.initial_settings()
            self.store.write(
                lambda c: collective_settings.adopt_moved_config(
                    c, initial=initial, keys=moved.values(), signer=self.signer, at=now
                )
            )
            upgrade.remove_moved_config(self.data.config_path)
        self.store.write(lambda c: collective_settings.ensure_settings(c, signer=self.signer, at=now))
        # Members from before names were claimed: their names and a random default pseudonym.
        if self.store.read(members_without_pseudonym):
            self.store.write(lambda c: attribution.upgrade(c, now=now))
        else:
            # Names claimed under an earlier way of comparing them are compared the current way.
            self.store.write(attribution.refold)
        # Releases cut before anonymity was enforced: revised once, before anything is served.
        self.reform_releases()
        # Releases cut before statements were stored: signed now by the key that cut them.
        self.store_missing_statements()

    def close(self) -> None:
        # The gossip connections kept open to peers go first (only if gossip ever ran).
        federation = self.__dict__.get("federation")
        if federation is not None:
            federation.rounds.close()
        self.store.close()

    @functools.cached_property
    def federation(self) -> FederationService:
        """This node's federation (its book of peers' manifests, its own manifests, gossip)."""
        return FederationService(
            self.store,
            self.data,
            node_id=self.identity.node_id,
            node=self.config.node,
            config=self.config.federation,
            clock=self.now,
            signer=lambda: self.signer,
            settings=self.settings,
            reload_identity=self.reload_identity,
        )

    @property
    def eval_token_path(self) -> Path:
        """The secret a SuperNode shows the local eval interface (``DIR/keys/eval.token``)."""
        return self.data.root / "keys" / "eval.token"

    def ensure_eval_token(self) -> None:
        """Make the eval token now (once, mode 0600), so a SuperNode finds it before any request."""
        ensure_eval_token(self.eval_token_path)

    @functools.cached_property
    def evaluation(self) -> Evaluation:
        """This node's answers to federated evaluation requests."""
        return Evaluation(
            self.store,
            token_path=self.eval_token_path,
            node_id=self.identity.node_id,
            coop=self.config.node.name,
            clock=self.now,
            signer=lambda: self.signer,
            settings=lambda: self.settings().settings,
            limits=self.config.eval,
            joint=lambda: self.federation.joint.rules(),
        )

    @functools.cached_property
    def access(self) -> GatedAccess:
        """Gated access: builders' requests, grants, signed URLs (key ``keys/gated``), the register."""
        return GatedAccess(
            self.store,
            key_path=self.data.root / "keys" / "gated",
            clock=self.now,
            signer=lambda: self.signer,
            settings=lambda: self.settings().settings,
        )

    @functools.cached_property
    def eval_reports(self) -> EvalReports:
        """The signed eval reports this co-op published (its leaderboard shows them)."""
        return EvalReports(self.store, clock=self.now, signer=lambda: self.signer, known=self._known_coops)

    def _known_coops(self) -> dict[str, str]:
        """This co-op and its pinned peers, by node id: whose signed numbers it will show."""
        known = {peer.node_id: peer.name or "" for peer in self.federation.peers()}
        known[self.identity.node_id] = self.config.node.name
        return known

    def reload_identity(self) -> None:
        """After a key rotation: sign with the new key from now on."""
        self.identity = self.data.identity()
        self.signer = Signer(bytes(self.data.signing_key()))

    @staticmethod
    def now() -> int:
        return int(time.time())

    # -- intake -------------------------------------------------------------

    def build_submission(
        self, request: ContributionRequest | IngestRequest, *, channel: Channel, member: Member
    ) -> tuple[Submission, tuple[str, ...]]:
        if member.is_builder:
            raise ForbiddenError("a model builder's account does not contribute", field="member")
        return build_submission(
            request,
            channel=channel,
            username=member.name,
            pseudonym=None,  # the member's stored default, settled when the contribution is stored
            defaults=self.intake_defaults(),
            terms_version=self.config.node.terms_version,
            limits=self.limits,
            max_note_chars=self.config.limits.max_note_chars,
        )

    def intake_defaults(self, settings: Settings | None = None) -> Defaults:
        """What a new contribution gets for the choices left open: the co-op's defaults (of
        ``settings``, else the current ones), the AI-use preference shifted while a joint
        preference action binds the co-op (:func:`coop.node.policy.intake_defaults`)."""
        return policy.intake_defaults(
            self.settings().settings if settings is None else settings, self.federation.joint.rules()
        )

    def default_pseudonym(self, member: Member) -> str:
        """The member's default pseudonym (random, chosen once and stored)."""
        found = self.store.read(lambda c: stored_pseudonym(c, member.id))
        if found is not None:
            return found
        now = self.now()
        return self.store.write(lambda c: attribution.default_pseudonym(c, member.id, now=now))

    def edit(
        self, member: Member, uid: str, edit: EditRequest, new_uid: str
    ) -> tuple[str, ContributionState, tuple[str, ...]]:
        """Rectify a member's contribution (see :func:`contributions.edit_contribution`)."""
        terms = self.config.node.terms_version
        current, _ = self.store.read(lambda c: rights.current_submission(c, uid, member, terms_version=terms))
        edited, notices = apply_edit(
            current,
            edit,
            username=member.name,
            max_note_chars=self.config.limits.max_note_chars,
            limits=self.limits,
        )
        now = self.now()
        new, state = self.store.write(
            lambda c: rights.edit_contribution(
                c, uid=uid, member=member, edited=edited, new_uid=new_uid, now=now
            )
        )
        return new, state, notices

    # -- pipeline -------------------------------------------------------------

    @contextmanager
    def processor_lock(self) -> Iterator[None]:
        with self.data.lock("processor", purpose="the pipeline (coop serve or coop process)"):
            recovered = self.store.write(review.recover_claims)
            if recovered:
                log.info("returned %d entries left mid-processing to the waiting room", recovered)
            yield

    def process_pending(self, *, max_batches: int = _MAX_BATCHES_PER_RUN) -> BatchReport:
        """Process the waiting room in batches; the caller holds :meth:`processor_lock`.

        While the quality freeze is on nothing is processed: entries wait, safe.
        """
        if self.settings().settings.quality_freeze:
            return BatchReport(paused=True)
        total = BatchReport()
        threshold = self.config.pipeline.quarantine_pii_threshold
        for _ in range(max_batches):
            claim = secrets.randbits(52)
            batch = self.store.write(
                partial(review.claim_batch, claim=claim, limit=self.config.pipeline.batch_size)
            )
            if not batch:
                break
            outcomes = [
                (
                    item.seq,
                    process_entry(
                        item.submission,
                        uid=item.uid,
                        created_at=item.created_at,
                        contributor=item.contributor,
                        salt=self.salt,
                        threshold=threshold,
                    ),
                )
                for item in batch
            ]
            now = self.now()
            report = self.store.write(partial(review.finish_batch, claim=claim, outcomes=outcomes, now=now))
            total = BatchReport(
                accepted=total.accepted + report.accepted,
                quarantined=total.quarantined + report.quarantined,
                duplicate=total.duplicate + report.duplicate,
                skipped=total.skipped + report.skipped,
            )
        return total

    def decide_quarantine(self, uid: str, decision: Decision, *, admin: str) -> ContributionState:
        """Release a quarantined entry (still redacted) or reject it (erased)."""
        entry = self.store.read(lambda c: review.quarantined_entry(c, uid))
        outcome: Accepted | None = None
        if decision is Decision.RELEASE:
            # The admin's review replaces the PII threshold; validation still applies.
            result = process_entry(
                entry.submission,
                uid=uid,
                created_at=entry.created_at,
                contributor=entry.contributor,
                salt=self.salt,
                threshold=2**62,
            )
            outcome = result if isinstance(result, Accepted) else None
        now = self.now()

        def write(conn: sqlite3.Connection) -> ContributionState:
            state = review.decide_quarantine(
                conn, uid=uid, decision=decision, admin=admin, outcome=outcome, now=now
            )
            audit_log.audit(
                conn,
                signer=self.signer,
                at=now,
                actor=admin,
                action=(
                    AuditAction.QUARANTINE_RELEASE
                    if decision is Decision.RELEASE
                    else AuditAction.QUARANTINE_REJECT
                ),
                payload={"uid": uid, "state": state.value},
            )
            return state

        return self.store.write(write)

    # -- releases ---------------------------------------------------------------

    def cut_release(
        self, *, actor: str = "local-admin", progress: Callable[[str], None] | None = None
    ) -> ReleaseSummary:
        # A revision in progress (seconds at most) is waited for; another cut is refused soon after.
        with self.data.lock("release", purpose="a release cut", wait=_CUT_WAIT):
            self._revise()  # withdrawals not yet out of the served releases go first
            summary = cut_release(
                self.store,
                self.data.releases_path,
                coop=self.config.node.name,
                node_id=self.identity.node_id,
                now=self.now(),
                signer=self.signer,
                progress=progress,
                joint=self.federation.joint.rules(),
            )
        self.store.write(
            lambda c: audit_log.audit(
                c,
                signer=self.signer,
                at=summary.created_at,
                actor=actor,
                action=AuditAction.RELEASE_CUT,
                payload={
                    "release": summary.name,
                    "records": summary.records,
                    "tombstones": summary.tombstones,
                },
            )
        )
        return summary

    def cut_federated_release(self, *, progress: Callable[[str], None] | None = None) -> ReleaseSummary:
        with self.data.lock("release", purpose="a release cut", wait=_CUT_WAIT):
            # First: which peers' withdrawn records this node's federated releases held (the
            # tombstone list names only those), and withdrawn content out of the served ones.
            self._revise()
            return cut_federated_release(
                self.store,
                self.data.releases_path,
                coop=self.config.node.name,
                node_id=self.identity.node_id,
                now=self.now(),
                signer=self.signer,
                progress=progress,
                joint=self.federation.joint.rules(),
                origins=self.federation.joint.all_rules(),
            )

    def revise_releases(self, *, wait: float = 0.0) -> RevisionReport:
        """Take withdrawn records out of every release this node serves (see :mod:`coop.node.releases.revision`).

        Waits up to ``wait`` seconds for a release cut in progress (BusyError after that).
        """
        if not self.store.read(revision_pending):
            return RevisionReport()  # the usual case: no lock taken, no cut held up
        with self.data.lock("release", purpose="a release cut or revision", wait=wait):
            return self._revise()

    def store_missing_statements(self) -> int:
        """Sign and store the statement of every served release that has none (an upgrade's)."""
        missing = self.store.read(lambda c: unsigned_releases(c, self.data.releases_path))
        return store_missing_statements(missing, self.signer) if missing else 0

    def reform_releases(self, *, wait: float = 60.0) -> RevisionReport:
        """Once after an upgrade: put releases cut before anonymity was enforced in their public form."""
        if not self.store.read(reform_pending):
            return RevisionReport()
        with self.data.lock("release", purpose="revising releases after an upgrade", wait=wait):
            if not self.store.read(reform_pending):
                return RevisionReport()  # another process did it meanwhile
            report = reform_releases(self.store, self.data.releases_path, signer=self.signer, now=self.now())
        for item in report.revised:
            log.info("%s: revision %d puts its rows in their public form", item.release, item.revision)
        return report

    def _revise(self) -> RevisionReport:
        report = revise_releases(
            self.store,
            self.data.releases_path,
            signer=self.signer,
            node_id=self.identity.node_id,
            now=self.now(),
        )
        if report.revised:
            self.store.write(catalog.compact_text)  # no word of withdrawn text left in the search index
        for item in report.revised:
            kind = "federated release" if item.federated else "release"
            log.info(
                "%s %s: revision %d, %d withdrawn records removed",
                kind,
                item.release,
                item.revision,
                item.removed,
            )
        return report

    # -- collective governance ------------------------------------------------------

    def settings(self) -> SettingsView:
        """The current settings: one indexed lookup per call, decoded again only when they change."""
        version = self.store.read(collective_settings.settings_version)
        cached = self._settings
        if cached is None or cached.version != version:
            cached = self.store.read(collective_settings.current_settings)
            self._settings = cached
        return cached

    def change_settings(self, changes: dict[str, Any], *, actor: Actor) -> SettingsView:
        now = self.now()
        return self.store.write(
            lambda c: collective_settings.change_settings(
                c, changes=changes, actor=actor, at=now, signer=self.signer
            )
        )

    def propose(
        self, changes: dict[str, Any], *, reason: str, actor: Actor, voting_days: int | None = None
    ) -> ProposalView:
        if any(path.startswith("joint.") for path in changes):
            self.federation  # noqa: B018 (the joint decision paths read this node's joint actions)
        now = self.now()
        return self.store.write(
            lambda c: proposals.open_proposal(
                c,
                changes=changes,
                reason=reason,
                actor=actor,
                at=now,
                signer=self.signer,
                voting_days=voting_days,
            )
        )

    def vote(self, proposal_id: int, member: Member, choice: Choice) -> ProposalView:
        # Proposals whose time is up are closed (and audited) before any vote is counted.
        self.close_expired_proposals()
        self._load_joint_decisions()
        now = self.now()
        return self.store.write(
            lambda c: proposals.cast_vote(
                c, proposal_id=proposal_id, member=member, choice=choice, at=now, signer=self.signer
            )
        )

    def close_expired_proposals(self) -> list[int]:
        self._load_joint_decisions()
        now = self.now()
        return self.store.write(lambda c: proposals.close_expired(c, at=now, signer=self.signer))

    def _load_joint_decisions(self) -> None:
        """A passed ``joint.sign`` / ``joint.end`` proposal is carried out by this node's joint
        keeper (its federation): loaded first when one is open and it is not yet."""
        if "federation" in self.__dict__:
            return
        if self.store.read(joint_decision_open):
            self.federation  # noqa: B018

    def verify_audit(self) -> ChainReport:
        """The audit chain from the node's first key (its id), through each rotation, to the key now,
        checked against the signed head kept outside the database (a cut-off tail shows)."""
        identity = self.identity
        # The head first, then the log: the head is written after its entry commits, so read in
        # this order a log never looks shorter than its head unless rows were removed.
        try:
            head, damaged = read_head(self.data.audit_head_path), None
        except StorageError as exc:
            head, damaged = None, exc.message
        report = self.store.read(
            lambda c: audit_log.verify_audit(
                c, bytes.fromhex(identity.node_id), head=head, current_key=identity.public_key
            )
        )
        if damaged is not None and report:
            return ChainReport(report.checked, None, damaged, report.key)
        if report and report.key != identity.public_key.hex():
            return ChainReport(
                report.checked,
                report.checked + 1,
                f"the chain ends with key {report.key[:16]}..., but this node signs with "
                f"{identity.public_key.hex()[:16]}...: a rotation is missing from the log",
                report.key,
                report.warning,
            )
        return report

    def payout(
        self, version: int, *, amount: str, currency: str, actor: str, supersede: str | None = None
    ) -> payout_files.PayoutView:
        """Split ``amount`` over the records of release ``version`` as the settings say; store and audit it.

        A release already paid is refused unless ``supersede`` gives the reason to replace its payout.
        """
        summary = self.store.read(lambda c: get_release(c, version))
        withdrawn = self.store.read(withdrawn_uids)
        split = self.settings().settings.payout
        members = self.store.read(payout_files.payout_members)
        removed = self.store.read(
            lambda c: payout_files.removed_since_cut(c, version=summary.version, cut_at=summary.created_at)
        )
        buckets = [(bucket.name, bucket.license) for bucket in summary.buckets]
        records = payout_files.release_payout_records(
            self.data.releases_path / summary.label, buckets, withdrawn, members, removed
        )
        # One computation per (member, public name), regrouped: the public ledger shows only
        # what members chose (anonymous records on one line), the internal one pays each member.
        pairs = compute_payouts(summary.name, records, amount=amount, currency=currency, split=split)
        ledger, internal = payout_files.split_ledger(pairs)
        now = self.now()

        def write(c: sqlite3.Connection) -> payout_files.PayoutView:
            view = payout_files.record_payout(
                c,
                ledger=ledger,
                version=version,
                actor=actor,
                at=now,
                signer=self.signer,
                supersede=supersede,
            )
            payout_files.record_member_ledger(c, payout=view.id, ledger=internal)
            return view

        view = self.store.write(write)
        payout_files.write_ledger_files(self.data.root / "payouts", view, internal)
        return view

    # -- housekeeping -------------------------------------------------------------

    def purge_expired(self) -> retention.PurgeReport:
        now = self.now()
        return self.store.write(lambda c: retention.purge(c, now=now, config=self.config.retention))

    def retention_report(self) -> list[retention.RetentionItem]:
        now = self.now()
        return self.store.read(lambda c: retention.report(c, now=now, config=self.config))

    def index_catalog(self, *, max_batches: int = 50, batch: int = 2000) -> int:
        """Add newly released records to the public catalogue, a batch per transaction."""
        total = 0
        for _ in range(max_batches):
            added = self.store.write(lambda c: catalog.index_released(c, limit=batch))
            total += added
            if added < batch:
                break
        return total

    def metrics(self) -> metrics.MetricsReport:
        now = self.now()
        return self.store.read(lambda c: metrics.collect(c, now=now, config=self.config.channels))

    def refresh_reviews(self, channel: str = "git") -> list[Settled]:
        """Settle the releases under review on ``channel`` whose review ended (the serving node's
        periodic check); nothing when the channel is not in review mode."""
        from coop.node.channels.publish import refresh_reviews  # the channels load only if used

        return refresh_reviews(self, channel)
