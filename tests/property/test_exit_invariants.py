"""The disclosure promises held at the node's real exits, with random data (issue 10).

``test_disclosure_properties`` holds the pure policy to its invariants; this file holds
the exits that call it.  Each example builds two real co-ops in a fresh temp dir (A, the
origin, and B, a peer A pinned and that pinned A), random members and records (scope,
licence, attribution, tags, language, each with a unique marker word in its text) and
runs random collective actions in a random order: release cuts, embargoes (whole, by
tag, by language), the quality freeze, a volume cap voted in, withdrawals, revisions,
federated releases on either node, manifests, peer pulls, the catalogue and payouts.

The assertions read what actually left: release files (JSONL, Parquet, tombstones and
every other file of the folder), federated releases, manifests, fetch answers (to the
pinned peer and to a co-op nobody pinned), the catalogue, payout ledgers.  Expectations
come from each record's own choices and the switches flipped so far (a small model kept
beside the run), not from the policy under test.  Every message names the exit that broke.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from coop.federation import check_manifest
from coop.governance import (
    ANONYMOUS_PAYEE,
    Choice,
    License,
    LineKind,
    PolicyError,
    ProposalStatus,
    public_key,
)
from coop.node.collective.settings import Actor
from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases import catalog
from coop.node.releases.repository import list_federated_releases, list_releases
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

TAGS = ("tax", "health", "law")
LANGUAGES = ("en", "de", None)
ATTRIBUTIONS = ("username", "pseudonym:a", "pseudonym:b", "anonymous")
ADMIN = Actor("ada", admin=True)
STRANGER = public_key(bytes(range(32))).hex()  # a co-op nobody pinned


def event(text: str) -> None:
    """Hypothesis statistics, when running under Hypothesis (the directed example runs bare)."""
    with contextlib.suppress(InvalidArgument):
        _event(text)


# -- the random scenario -------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    member: int
    scope: str
    licence: str
    attribution: str
    tags: tuple[str, ...]
    language: str | None
    label: str


records = st.builds(
    Spec,
    member=st.integers(0, 2),
    scope=st.sampled_from(["node", "federation", "public", "public"]),
    licence=st.sampled_from([lic.value for lic in License]),
    attribution=st.sampled_from(ATTRIBUTIONS),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    language=st.sampled_from(LANGUAGES),
    label=st.sampled_from(["good", "fail"]),
)

embargoes = st.one_of(
    st.just({"on": False}),
    st.just({"on": True}),
    st.sampled_from(TAGS).map(lambda t: {"on": True, "tags": [t]}),
    st.sampled_from(["en", "de"]).map(lambda lang: {"on": True, "languages": [lang]}),
)

# A withdrawal picks a record by number, among those already out (admitted) when it says so.
withdrawals = st.tuples(st.just("withdraw"), st.integers(0, 9), st.booleans())
switches = st.one_of(
    embargoes.map(lambda e: ("embargo", e)),
    st.booleans().map(lambda on: ("freeze", on)),
    st.integers(0, 6).map(lambda n: ("cap", n)),
)
extras = st.one_of(
    switches,
    switches,
    withdrawals,
    st.sampled_from([("cut",), ("issue",), ("pull",), ("revise",), ("index",), ("payout",)]),
    st.sampled_from(["A", "B"]).map(lambda who: ("federated", who)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[Spec], list[tuple[Any, ...]]]:
    n_members = draw(st.integers(2, 3))
    specs = draw(st.lists(records, min_size=3, max_size=10))
    specs = [Spec(**{**s.__dict__, "member": s.member % n_members}) for s in specs]
    # Every kind of action at least once (cuts, manifests and pulls twice, so that records go
    # out before switches and withdrawals catch them), plus random extras, in a random order.
    base: list[tuple[Any, ...]] = [("cut",), ("cut",), ("issue",), ("issue",), ("pull",), ("pull",)]
    base += [("revise",), ("index",), ("payout",), ("federated", "A"), ("federated", "B")]
    base += [draw(withdrawals), draw(switches)]
    steps = draw(st.permutations(base + draw(st.lists(extras, max_size=6))))
    return n_members, specs, steps


# -- the model: what each record chose, and what happened to it ----------------------------------


@dataclass
class Rec:
    index: int
    spec: Spec
    uid: str
    hash: str
    marker: str
    handle: str
    admitted: bool = False  # a cut of A admitted it (public: released; federation: listable)
    withdrawn: bool = False
    listed: bool = False  # a manifest of A listed it

    @property
    def scope(self) -> str:
        return self.spec.scope

    @property
    def public_name(self) -> str | None:
        """The name the member chose to be known by for this record (None: anonymous)."""
        mode = self.spec.attribution
        if mode == "username":
            return self.handle
        if mode.startswith("pseudonym:"):
            return self.pseudonym
        return None

    @property
    def pseudonym(self) -> str:
        return f"pen-{self.spec.member}-{self.spec.attribution.split(':', 1)[1]}"

    @property
    def identity(self) -> str:
        """Which of the member's public identities this record is under."""
        return self.spec.attribution


@dataclass
class Switches:
    embargo: dict[str, Any] = field(default_factory=lambda: {"on": False})
    freeze: bool = False

    def covers(self, rec: Rec) -> bool:
        """The embargo covers the record, read from the record's own tags and language."""
        e = self.embargo
        if not e.get("on"):
            return False
        tags, languages = e.get("tags", []), e.get("languages", [])
        if not tags and not languages:
            return True
        return rec.spec.language in languages or any(t in tags for t in rec.spec.tags)

    def blocks(self, rec: Rec) -> bool:
        """Nothing of this record may flow to a peer now."""
        return self.freeze or self.covers(rec)

    def copy(self) -> Switches:
        return Switches(dict(self.embargo), self.freeze)


@dataclass
class World:
    a: Node
    b: Node
    members: list[Any]
    recs: list[Rec]
    now: Switches = field(default_factory=Switches)  # A's switches as they are
    issued: Switches = field(default_factory=Switches)  # as A's latest manifest says
    seen_by_b: Switches = field(default_factory=Switches)  # as the manifests B received say
    issued_withdrawn: set[str] = field(default_factory=set)  # withdrawn when A last issued
    b_knows_withdrawn: set[str] = field(default_factory=set)  # tombstones B received
    b_held: set[str] = field(default_factory=set)
    cap: int | None = None
    used: int = 0  # records admitted this month (both scopes)
    paid: set[int] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    def by_uid(self, uid: str) -> Rec | None:
        return next((r for r in self.recs if r.uid == uid), None)

    def rec(self, uid: str, exit_name: str) -> Rec:
        found = self.by_uid(uid)
        assert found is not None, f"{exit_name}: served a uid no member contributed: {uid}\n{self.trace()}"
        return found

    def trace(self) -> str:
        lines = [
            f"  r{r.index} {r.uid[:13]} {r.spec} marker={r.marker} admitted={r.admitted} withdrawn={r.withdrawn}"
            for r in self.recs
        ]
        return "records:\n" + "\n".join(lines) + "\nsteps: " + " -> ".join(self.log)


# -- reading the exits -----------------------------------------------------------------------------


def _hash_of(node: Node, uid: str) -> str:
    row = node.store.read(
        lambda c: c.execute("SELECT record_sha256, state FROM contributions WHERE uid = ?", (uid,)).fetchone()
    )
    assert row[1] == "accepted", f"pipeline: {uid} is {row[1]}, not accepted"
    return str(row[0])


@dataclass
class Folder:
    """One served release folder, read as a downloader would."""

    exit: str
    path: Path
    summary: dict[str, Any]
    rows: list[tuple[str, dict[str, Any]]]  # (where, row) from JSONL and Parquet
    tombstones: list[dict[str, Any]]
    text: str  # every non-Parquet file of the folder, concatenated


def _folders(node: Node, who: str) -> Iterator[Folder]:
    own = node.store.read(list_releases)
    fed = node.store.read(list_federated_releases)
    for kind, base, summaries in (
        ("release", node.data.releases_path, own),
        ("federated release", node.data.releases_path / "federated", fed),
    ):
        for summary in summaries:
            path = base / summary.label
            exit_name = f"{who} {kind} {summary.label}"
            assert path.is_dir(), f"{exit_name}: the folder the database names is missing"
            meta = json.loads((path / "release.json").read_text())
            rows: list[tuple[str, dict[str, Any]]] = []
            for bucket in meta["buckets"]:
                folder = path / bucket["name"]
                for line in (folder / "data.jsonl").read_text().splitlines():
                    rows.append((f"{bucket['name']}/data.jsonl", json.loads(line)))
                for row in pq.read_table(folder / "data.parquet").to_pylist():
                    rows.append((f"{bucket['name']}/data.parquet", row))
            tombstones = [json.loads(line) for line in (path / "tombstones.jsonl").read_text().splitlines()]
            text = "\n".join(
                p.read_text(errors="replace")
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix != ".parquet"
            )
            yield Folder(exit_name, path, meta, rows, tombstones, text)


def _row_text(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str)


def _manifest(world: World, seq: int) -> Any:
    a_id = world.a.identity.node_id
    envelope = world.a.federation.envelope(a_id, seq)
    return check_manifest(envelope, trusted={a_id: a_id}).manifest


def _fetch(server: Node, world: World, requester: str) -> dict[str, dict[str, Any]]:
    """A hostile ask: every record hash the origin ever had, uid -> the record served."""
    found, _ = server.federation.fetch([r.hash for r in world.recs], requester=requester)
    return {json.loads(data)["uid"]: json.loads(data) for data in found.values()}


# -- the invariants, per exit ----------------------------------------------------------------------


def check_row(world: World, exit_name: str, row: dict[str, Any], *, public: bool, seen: Seen) -> Rec:
    """One record as an exit served it: never node scope; never federation scope in public;
    no withdrawn text; the identifier only as the member chose; recorded for linkability."""
    rec = world.rec(row["uid"], exit_name)
    where = f"{exit_name}: r{rec.index} ({rec.spec.scope}, {rec.spec.attribution})"
    assert rec.scope != "node", f"{where}: a node-scope record left the node\n{world.trace()}"
    if public:
        assert rec.scope == "public", (
            f"{where}: a federation-scope record is in a public output\n{world.trace()}"
        )
    assert rec.admitted, f"{where}: served a record no release cut admitted\n{world.trace()}"
    attribution = row.get("attribution") or {}
    name, chash = attribution.get("name"), row.get("contributor_hash")
    if rec.spec.attribution == "anonymous":
        assert name is None and chash is None, (
            f"{where}: an anonymous record carries an identifier (name={name!r}, hash={chash!r})\n{world.trace()}"
        )
    else:
        assert name == rec.public_name, (
            f"{where}: credited as {name!r}, the member chose {rec.public_name!r}\n{world.trace()}"
        )
    seen.add(rec, exit_name, name, chash)
    return rec


class Seen:
    """Every identifier each record was served with, to check that identities do not link."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str], dict[str, str]] = {}  # (member, identity) -> identifier -> exit

    def add(self, rec: Rec, exit_name: str, *identifiers: str | None) -> None:
        bucket = self.ids.setdefault((rec.spec.member, rec.identity), {})
        for ident in identifiers:
            if ident:
                bucket.setdefault(ident, f"{exit_name} (r{rec.index})")

    def check(self, world: World) -> None:
        for (member, identity), ids in self.ids.items():
            for (other_member, other_identity), other_ids in self.ids.items():
                if other_member != member or other_identity == identity:
                    continue
                shared = set(ids) & set(other_ids)
                assert not shared, (
                    f"{ids[min(shared)]} and {other_ids[min(shared)]}: member {member}'s records under "
                    f"{identity!r} and {other_identity!r} share the identifier {min(shared)!r}\n{world.trace()}"
                )


def check_folder(world: World, folder: Folder, seen: Seen, *, withdrawn_gone: set[str]) -> set[str]:
    """A served release folder (own or federated, on A or B); returns the uids it holds."""
    exit_name = folder.exit
    uids: set[str] = set()
    for where, row in folder.rows:
        rec = check_row(world, f"{exit_name} {where}", row, public=True, seen=seen)
        uids.add(rec.uid)
        assert rec.uid not in withdrawn_gone, (
            f"{exit_name} {where}: r{rec.index} was withdrawn and the release was revised, yet it is served"
            f"\n{world.trace()}"
        )
    # Every bucket one licence, the bucket's own: ShareAlike never mixed.
    for bucket in folder.summary["buckets"]:
        licences = {row["license"] for where, row in folder.rows if where.startswith(bucket["name"] + "/")}
        assert licences <= {bucket["license"]}, (
            f"{exit_name} bucket {bucket['name']}: licences {sorted(licences)} in a {bucket['license']} bucket"
        )
    # Nothing of a node-scope record, nor a federation-scope uid, in any file of the folder.
    for rec in world.recs:
        if rec.scope == "node":
            assert rec.uid not in folder.text and rec.marker not in folder.text, (
                f"{exit_name}: node-scope r{rec.index} named in the folder's files\n{world.trace()}"
            )
        if rec.scope == "federation":
            assert rec.uid not in folder.text, (
                f"{exit_name}: federation-scope r{rec.index} named in a public folder\n{world.trace()}"
            )
        if rec.uid in withdrawn_gone:
            assert rec.marker not in folder.text, (
                f"{exit_name}: withdrawn r{rec.index}'s text still served after revision\n{world.trace()}"
            )
    # Tombstones name only records that were public and released before.
    for tomb in folder.tombstones:
        rec = world.rec(tomb["uid"], f"{exit_name} tombstones.jsonl")
        assert rec.scope == "public" and rec.admitted and rec.withdrawn, (
            f"{exit_name} tombstones.jsonl: names r{rec.index} ({rec.scope}, admitted={rec.admitted},"
            f" withdrawn={rec.withdrawn}), never public in a release\n{world.trace()}"
        )
    pairs = [(t.get("origin"), t["uid"]) for t in folder.tombstones]
    assert len(pairs) == len(set(pairs)), f"{exit_name} tombstones.jsonl: duplicates {pairs}"
    return uids


def check_fetch(
    world: World, server: str, requester: str, got: dict[str, dict[str, Any]], seen: Seen
) -> None:
    exit_name = f"fetch from {server} by {'B' if requester == world.b.identity.node_id else 'A' if requester == world.a.identity.node_id else 'a stranger'}"
    state = world.now if server == "A" else world.seen_by_b
    gone = {r.uid for r in world.recs if r.withdrawn} if server == "A" else world.b_knows_withdrawn
    for row in got.values():
        rec = check_row(world, exit_name, row, public=requester == STRANGER, seen=seen)
        where = f"{exit_name}: r{rec.index}"
        assert rec.uid not in gone, f"{where} was withdrawn, yet its text is served\n{world.trace()}"
        assert not state.freeze, f"{where} served while the quality freeze is on\n{world.trace()}"
        assert not state.covers(rec), f"{where} served while an embargo covers it\n{world.trace()}"
        if server == "B":
            assert rec.uid in world.b_held, f"{where}: B served a record it never pulled"


def check_catalog(world: World, seen: Seen, *, withdrawn_gone: set[str]) -> None:
    a = world.a
    embargo = a.settings().settings.embargo
    page = a.store.read(lambda c: catalog.search(c, catalog.SearchFilters(), embargo=embargo, page_size=100))
    for row in page.rows:
        rec = world.rec(row.uid, "catalogue search")
        where = f"catalogue search: r{rec.index} ({rec.scope}, {rec.spec.attribution})"
        assert rec.scope == "public" and rec.admitted, f"{where} listed, never released\n{world.trace()}"
        assert not rec.withdrawn, f"{where} listed after its withdrawal\n{world.trace()}"
        assert not world.now.covers(rec), f"{where} listed under an embargo covering it\n{world.trace()}"
        expected = rec.public_name or "anonymous"
        assert row.contributor == expected, f"{where}: shown as {row.contributor!r}, chose {expected!r}"
        seen.add(rec, "catalogue search", None if row.contributor == "anonymous" else row.contributor)
    for rec in world.recs:
        found = a.store.read(lambda c, uid=rec.uid: catalog.record(c, uid, embargo=embargo))
        if found is not None:
            check_row(world, "catalogue record", json.loads(_encode(found)), public=True, seen=seen)
            assert not world.now.covers(rec), (
                f"catalogue record: r{rec.index} shown under an embargo covering it"
            )
        if rec.scope != "public" or rec.uid in withdrawn_gone:
            hits = a.store.read(
                lambda c, m=rec.marker: catalog.search(c, catalog.SearchFilters(q=m), embargo=embargo)
            )
            assert not hits.rows, (
                f"catalogue search q={rec.marker}: finds {rec.scope} r{rec.index} (withdrawn={rec.withdrawn})"
                f"\n{world.trace()}"
            )


def _encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


# -- the actions ------------------------------------------------------------------------------------


def act(world: World, step: tuple[Any, ...], seen: Seen) -> None:
    a, b = world.a, world.b
    kind = step[0]
    world.log.append(" ".join(str(s) for s in step))
    if kind == "cut":
        if world.now.freeze:
            try:
                a.cut_release()
            except PolicyError:
                return
            raise AssertionError(
                f"release cut: a cut went through while the quality freeze is on\n{world.trace()}"
            )
        remaining = None if world.cap is None else max(world.cap - world.used, 0)
        admitted: list[Rec] = []
        if remaining != 0:
            for rec in world.recs:
                if rec.admitted or rec.withdrawn or rec.scope == "node" or world.now.covers(rec):
                    continue
                admitted.append(rec)
                if remaining is not None and len(admitted) >= remaining:
                    break
        summary = a.cut_release()
        for rec in admitted:
            rec.admitted = True
        world.used += len(admitted)
        expected = {
            r.uid
            for r in world.recs
            if r.scope == "public" and r.admitted and not r.withdrawn and not world.now.covers(r)
        }
        folder = next(f for f in _folders(a, "A") if f.exit == f"A release {summary.label}")
        got = {row["uid"] for _, row in folder.rows}
        names = lambda uids: sorted(f"r{world.rec(u, 'cut').index}" for u in uids)  # noqa: E731
        assert got == expected, (
            f"release cut {summary.label}: holds {names(got)}, the records' choices and the switches say "
            f"{names(expected)}\n{world.trace()}"
        )
    elif kind == "embargo":
        a.change_settings({"embargo": step[1]}, actor=ADMIN)
        world.now.embargo = dict(step[1])
    elif kind == "freeze":
        a.change_settings({"quality_freeze": step[1]}, actor=ADMIN)
        world.now.freeze = step[1]
    elif kind == "cap":
        proposal = a.propose({"volume_cap.monthly_records": step[1]}, reason="pace", actor=ADMIN)
        for member in world.members:
            proposal = a.vote(proposal.id, member, Choice.YES)
            if proposal.status is not ProposalStatus.OPEN:
                break
        world.cap = a.settings().settings.volume_cap.monthly_records
    elif kind == "withdraw":
        pool = [r for r in world.recs if not r.withdrawn and (r.admitted or not step[2])]
        if pool:
            rec = pool[step[1] % len(pool)]
            member = world.members[rec.spec.member]
            a.store.write(lambda c: withdraw_contribution(c, uid=rec.uid, member=member, now=a.now()))
            rec.withdrawn = True
    elif kind == "revise":
        a.revise_releases()
    elif kind == "federated":
        node = a if step[1] == "A" else b
        summary = node.cut_federated_release()
        folder = next(
            f for f in _folders(node, step[1]) if f.exit == f"{step[1]} federated release {summary.label}"
        )
        gone = {r.uid for r in world.recs if r.withdrawn} if step[1] == "A" else world.b_knows_withdrawn
        uids = check_folder(world, folder, seen, withdrawn_gone=gone)
        state = world.now if step[1] == "A" else world.seen_by_b
        for uid in uids:
            rec = world.rec(uid, folder.exit)
            assert not state.covers(rec), (
                f"{folder.exit}: r{rec.index} published while its origin's embargo covers it\n{world.trace()}"
            )
            # The policy's rule for a federated release: nothing while its origin's freeze is on.
            assert not state.freeze, (
                f"{folder.exit}: r{rec.index} published during its origin's quality freeze\n{world.trace()}"
            )
            if step[1] == "B":
                assert uid in world.b_held, f"{folder.exit}: r{rec.index} published, never pulled"
    elif kind == "issue":
        report = a.federation.issue()
        world.issued = world.now.copy()
        world.issued_withdrawn = {r.uid for r in world.recs if r.withdrawn}
        if report is None:
            return
        manifest = _manifest(world, report.seq)
        text = _encode(manifest).decode()
        for entry in manifest.added():
            rec = world.rec(entry.uid, f"manifest {report.seq}")
            where = f"manifest {report.seq}: lists r{rec.index} ({rec.scope})"
            assert rec.scope != "node", f"{where}: node scope\n{world.trace()}"
            assert rec.admitted, f"{where}, which no release cut admitted\n{world.trace()}"
            assert not rec.withdrawn, f"{where} after its withdrawal\n{world.trace()}"
            assert not world.now.blocks(rec), (
                f"{where} under an embargo covering it or the freeze\n{world.trace()}"
            )
            rec.listed = True
        for tomb in manifest.tombstones:
            rec = world.rec(tomb.uid, f"manifest {report.seq} tombstones")
            assert rec.withdrawn and rec.listed, (
                f"manifest {report.seq}: a tombstone for r{rec.index} ({rec.scope}), never listed\n{world.trace()}"
            )
        for rec in world.recs:
            if rec.scope == "node":
                assert rec.uid not in text and rec.hash not in text, (
                    f"manifest {report.seq}: names node-scope r{rec.index}"
                )
    elif kind == "pull":
        a_id = a.identity.node_id
        chain = a.federation.store.chain_after(a_id, 0, 1000)
        b.federation.book.receive(chain, now=a.now())
        world.seen_by_b = world.issued.copy()
        world.b_knows_withdrawn = set(world.issued_withdrawn) & {r.uid for r in world.recs if r.listed}
        world.b_held -= world.b_knows_withdrawn
        wanted = b.federation.book.record_wants()
        for _, entry in wanted:
            rec = world.rec(entry.uid, "B's record wants")
            assert not world.seen_by_b.blocks(rec), (
                f"B's record wants: B asks for r{rec.index} while A's manifest says embargo or freeze\n{world.trace()}"
            )
        got, _ = a.federation.fetch([e.hash for _, e in wanted], requester=b.identity.node_id)
        check_fetch(
            world, "A", b.identity.node_id, {json.loads(d)["uid"]: json.loads(d) for d in got.values()}, seen
        )
        b.federation.book.receive_records(wanted, got)
        world.b_held |= {json.loads(d)["uid"] for d in got.values()}
        # A hostile ask for everything, by the pinned peer and by a stranger.
        check_fetch(world, "A", b.identity.node_id, _fetch(a, world, b.identity.node_id), seen)
        check_fetch(world, "A", STRANGER, _fetch(a, world, STRANGER), seen)
    elif kind == "index":
        a.index_catalog()
        check_catalog(world, seen, withdrawn_gone={r.uid for r in world.recs if r.withdrawn})
    elif kind == "payout":
        releases = [s for s in a.store.read(list_releases) if s.records and s.version not in world.paid]
        if not releases:
            return
        summary = releases[-1]
        view = a.payout(summary.version, amount="100.00", currency="EUR", actor="ada")
        world.paid.add(summary.version)
        folder = next(f for f in _folders(a, "A") if f.exit == f"A release {summary.label}")
        held = [world.rec(row["uid"], "payout") for where, row in folder.rows if where.endswith(".jsonl")]
        allowed = {r.public_name for r in held if r.public_name} | {ANONYMOUS_PAYEE}
        files = sorted((a.data.root / "payouts").glob(f"payout-{view.id}-*"))
        ledger_text = "\n".join(p.read_text() for p in files)
        for line in view.ledger.lines:
            if line.kind is LineKind.CONTRIBUTOR:
                assert line.payee in allowed, (
                    f"payout ledger {summary.name}: pays {line.payee!r}, a name no record in the release chose"
                    f" (allowed {sorted(allowed)})\n{world.trace()}"
                )
        for rec in world.recs:
            if rec.scope == "node":
                assert rec.uid not in ledger_text and rec.marker not in ledger_text, (
                    f"payout ledger: node-scope r{rec.index}"
                )
        anonymous_only = {r.handle for r in held if r.spec.attribution == "anonymous"} - {
            r.handle for r in held if r.spec.attribution == "username"
        }
        for handle in anonymous_only:
            assert handle not in ledger_text, (
                f"payout ledger files {[p.name for p in files]}: name {handle!r}, who is in the release only"
                f" anonymously\n{world.trace()}"
            )
    else:  # pragma: no cover
        raise AssertionError(step)


def finish(world: World, seen: Seen) -> None:
    """The origin announces, the peer learns, both revise: then every exit is read once more."""
    a, b = world.a, world.b
    act(world, ("issue",), seen)
    act(world, ("pull",), seen)
    a.revise_releases()
    b.revise_releases()
    a.index_catalog()
    withdrawn = {r.uid for r in world.recs if r.withdrawn}
    for node, who in ((a, "A"), (b, "B")):
        for folder in _folders(node, who):
            check_folder(world, folder, seen, withdrawn_gone=withdrawn)
    # every file under both nodes' releases/, served or left behind
    for node, who in ((a, "A"), (b, "B")):
        for path in node.data.releases_path.rglob("*"):
            if not path.is_file() or path.suffix == ".parquet":
                continue
            text = path.read_text(errors="replace")
            for rec in world.recs:
                rel = path.relative_to(node.data.releases_path)
                if rec.scope == "node":
                    assert rec.uid not in text and rec.marker not in text, (
                        f"{who} releases/{rel}: node-scope r{rec.index}"
                    )
                if rec.uid in withdrawn:
                    assert rec.marker not in text, (
                        f"{who} releases/{rel}: withdrawn r{rec.index}'s text after revision"
                    )
    check_catalog(world, seen, withdrawn_gone=withdrawn)
    check_fetch(world, "A", b.identity.node_id, _fetch(a, world, b.identity.node_id), seen)
    check_fetch(world, "A", STRANGER, _fetch(a, world, STRANGER), seen)
    check_fetch(world, "B", a.identity.node_id, _fetch(b, world, a.identity.node_id), seen)
    check_fetch(world, "B", STRANGER, _fetch(b, world, STRANGER), seen)
    seen.check(world)
    # What the example exercised (shown by --hypothesis-show-statistics).
    released = [r for r in world.recs if r.admitted and r.scope == "public"]
    event(f"records released: {'some' if released else 'none'}")
    event(f"B holds mirrored records: {'yes' if world.b_held else 'no'}")
    event(f"a released record withdrawn: {'yes' if any(r.withdrawn for r in released) else 'no'}")
    event(
        f"a listed record withdrawn: {'yes' if any(r.withdrawn and r.listed for r in world.recs) else 'no'}"
    )
    event(f"payouts made: {len(world.paid)}")


# -- the property ------------------------------------------------------------------------------------


def _pin(node: Node, other: Node) -> None:
    """Pin ``other`` as a peer of ``node`` (no network: the test hands manifests and records over)."""
    other_id = other.identity.node_id
    node.federation.add_peer(f"http://127.0.0.1:9/{other_id[:8]}", other_id, name=None, actor="test")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_every_exit_keeps_the_disclosure_promises(
    scenario: tuple[int, list[Spec], list[tuple[Any, ...]]],
) -> None:
    n_members, specs, steps = scenario
    with tempfile.TemporaryDirectory(prefix="exits-") as tmp:
        a, b = make_node(Path(tmp), "A"), make_node(Path(tmp), "B")
        try:
            _pin(a, b)
            _pin(b, a)
            members = [make_member(a)[0] for _ in range(n_members)]
            recs: list[Rec] = []
            for index, spec in enumerate(specs):
                marker = f"zorblat{index}q"
                member = members[spec.member]
                attribution = spec.attribution
                if attribution.startswith("pseudonym:"):
                    attribution = f"pseudonym:pen-{spec.member}-{attribution.split(':', 1)[1]}"
                uid = contribute(
                    a,
                    member,
                    text=f"User: Tell me about {marker} please.\nAssistant: Here is what I know about {marker}.",
                    label=spec.label,
                    license=spec.licence,
                    scope=spec.scope,
                    attribution=attribution,
                    tags=list(spec.tags),
                    **({"language": spec.language} if spec.language else {}),
                )
                recs.append(Rec(index, spec, uid, "", marker, member.name))
            process(a)
            for rec in recs:
                rec.hash = _hash_of(a, rec.uid)
            world = World(a, b, members, recs)
            seen = Seen()
            for step in steps:
                act(world, step, seen)
            finish(world, seen)
        finally:
            a.close()
            b.close()


def test_origins_own_federated_release_during_its_freeze() -> None:
    """The smallest example this property found failing once: cut, freeze on, federated release."""
    specs = [
        Spec(0, "public", "CC0-1.0", "username", (), "en", "good"),
        Spec(1, "node", "CC0-1.0", "anonymous", (), None, "good"),
    ]
    inner = test_every_exit_keeps_the_disclosure_promises.hypothesis.inner_test  # type: ignore[attr-defined]
    inner(scenario=(2, specs, [("cut",), ("freeze", True), ("federated", "A")]))
