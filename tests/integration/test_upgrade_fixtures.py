"""Today's code opens a data directory from every schema that landed on main and loses nothing.

Each fixture (tests/fixtures/datadirs/schema-<N>-<hash>.tar.gz) was made by that commit's own
code (make_fixtures.py there says how); its ``fixture.json`` says what the old node held.  Opening
one must keep every record and uid, member, release (files still matching their checksums) and
audit entry, grow the audit chain only by the upgrade's own entries, reach exactly the schema of
a new node, and move ``[defaults]`` out of ``node.toml`` into the collective settings.  The
fixtures from schema 24 on published their releases to a bare git repository (made beside the
node, not packed): upgrading one must fill the channel ledger and its running totals.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tarfile
import time
import tomllib
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from coop.node.releases.channel_metrics import ledger_totals, ledger_totals_scan
from coop.node.runtime import Node
from coop.node.storage.datadir import DataDir
from coop.node.storage.migrations import MIGRATIONS
from coop.node.storage.store import Store
from coop.node.storage.upgrade import plan_upgrade

from harness import bearer, chat_text, code_word, running
from nodeproc import coop

pytestmark = pytest.mark.integration

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "datadirs").glob("schema-*.tar.gz"))
# What opening an old node may add to its audit log (and the cut this test makes after it).
UPGRADE_ACTIONS = {"settings.init", "config.moved", "release.revise"}
# The fixtures whose upgrade was broken before (issue 12): served by a real process too.
BROKEN_BEFORE = ("schema-1-74182d8", "schema-6-74182d8-then-57261cf")


def published(archive: Path) -> bool:
    """Whether the old node published a release (fixture.json lists its publications)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("fixture.json")
        assert member is not None
        return bool(json.loads(member.read()).get("publications"))


PUBLISHED = [path for path in FIXTURES if published(path)]


@dataclass(frozen=True)
class Snapshot:
    version: int
    states: dict[str, str]
    members: dict[str, str]  # name -> contributor hash
    contents: dict[str, tuple[bool, bool]]  # uid -> (has submission, has record)
    releases: list[int]
    release_uids: dict[str, set[str]]  # release name -> uids in its JSONL files
    audit: list[tuple[int, str, str]]  # (seq, action, hash)


def unpack(archive: Path, into: Path) -> tuple[Path, dict[str, Any]]:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    facts: dict[str, Any] = json.loads((into / "fixture.json").read_text(encoding="utf-8"))
    return into / "node", facts


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def tables(db: Path) -> set[str]:
    return {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def snapshot(root: Path) -> Snapshot:
    db = root / "coop.sqlite3"
    names = tables(db)
    if "contents" in names:
        contents_sql = (
            "SELECT c.uid, t.submission IS NOT NULL, t.record IS NOT NULL"
            " FROM contributions c LEFT JOIN contents t ON t.seq = c.seq"
        )
    else:  # before 82eaf29 the chats were columns of the contribution itself
        contents_sql = "SELECT uid, submission IS NOT NULL, record IS NOT NULL FROM contributions"
    release_uids = {}
    for folder in sorted((root / "releases").glob("v*"), key=revision_order):
        uids = set()
        for jsonl in folder.glob("*/data.jsonl"):
            uids |= {
                json.loads(line)["uid"] for line in jsonl.read_text(encoding="utf-8").splitlines() if line
            }
        # A revised release (vN-rK: withdrawn records out, anonymous rows in their public form)
        # stands for vN: the latest revision is what the node serves.
        release_uids[folder.name.split("-")[0]] = uids
    return Snapshot(
        version=query(db, "PRAGMA user_version")[0][0],
        states=dict(query(db, "SELECT uid, state FROM contributions")),
        members=dict(query(db, "SELECT name, contributor_hash FROM members")),
        contents={uid: (bool(s), bool(r)) for uid, s, r in query(db, contents_sql)},
        releases=[row[0] for row in query(db, "SELECT version FROM releases ORDER BY version")],
        release_uids=release_uids,
        audit=(
            [(s, a, h) for s, a, h in query(db, "SELECT seq, action, hash FROM audit_log ORDER BY seq")]
            if "audit_log" in names
            else []
        ),
    )


def revision_order(folder: Path) -> tuple[int, int]:
    version, _, revision = folder.name.removeprefix("v").partition("-r")
    return int(version), int(revision or 1)


def shape(db: Path) -> dict[str, Any]:
    """Tables with their columns (type, not-null, default) and the indexes: what a migration makes."""
    out: dict[str, Any] = {}
    for name, kind in query(db, "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind == "table":
            columns = query(
                db, f"SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('{name}')"
            )
            out[name] = sorted(columns)
        else:
            out[name] = kind
    return out


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_checksums(release: Path) -> None:
    lines = (release / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert lines, f"{release.name}: empty SHA256SUMS"
    for line in lines:
        digest, name = line.split(maxsplit=1)
        actual = hashlib.sha256((release / name).read_bytes()).hexdigest()
        assert actual == digest, f"{release.name}/{name} no longer matches its checksum"


@pytest.fixture(scope="module")
def fresh_shape(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = DataDir.create(tmp_path_factory.mktemp("fresh") / "node", name="Fresh")
    Store(data.db_path).close()
    return shape(data.db_path)


def test_upgrade_fixtures_cover_every_schema_that_landed() -> None:
    schemas = {int(path.name.split("-")[1]) for path in FIXTURES}
    assert schemas == {1, 2, 3, 4, 5, 6, 11, 12, 15, 24, 26}, sorted(schemas)
    assert {p.name.removesuffix(".tar.gz") for p in PUBLISHED} == {"schema-24-1a0bd37", "schema-26-b2f8484"}
    for path in FIXTURES:
        assert path.stat().st_size < 200_000, f"{path.name} is too big for a fixture"


@pytest.mark.parametrize("archive", FIXTURES, ids=[p.name.removesuffix(".tar.gz") for p in FIXTURES])
def test_upgrade_fixture_opens_with_nothing_lost(
    archive: Path, tmp_path: Path, fresh_shape: dict[str, Any]
) -> None:
    root, facts = unpack(archive, tmp_path)
    before = snapshot(root)
    assert before.version == facts["schema"]
    assert before.states == facts["states"]
    old_config = tomllib.loads((root / "node.toml").read_text(encoding="utf-8"))

    untouched = files_of(root)
    plan = plan_upgrade(root)
    assert files_of(root) == untouched, "the dry run wrote to the data directory"
    if before.version < len(MIGRATIONS):
        assert f"migration {len(MIGRATIONS)}: " in "\n".join(plan)
    if "defaults" in old_config:
        assert any(line.startswith("node.toml: defaults.license") for line in plan), plan

    node = Node(root)
    try:
        report = node.verify_audit()
        assert report, f"audit chain broken at {report.first_bad}: {report.problem}"
        settings = node.settings().settings
        summary = node.cut_release()
    finally:
        node.close()
    after = snapshot(root)

    assert after.version == len(MIGRATIONS)
    assert shape(root / "coop.sqlite3") == fresh_shape, "the upgraded schema differs from a new node's"
    assert after.states == before.states, "a contribution's state changed"
    assert after.members == before.members
    assert set(after.contents) == set(before.contents), "a contribution lost its contents row"
    for uid, state in after.states.items():
        if state in ("accepted", "released"):
            assert after.contents[uid][1], f"{state} {uid} lost its record"
        if state == "quarantined":
            assert after.contents[uid][0], f"quarantined {uid} lost the submission the admin reviews"

    assert after.audit[: len(before.audit)] == before.audit, "an audit entry was rewritten"
    added = {action for _, action, _ in after.audit[len(before.audit) :]}
    assert added <= UPGRADE_ACTIONS | {"release.cut"}, added

    assert after.releases == [*before.releases, summary.version]
    withdrawn = {uid for uid, state in before.states.items() if state == "withdrawn"}
    for name, uids in before.release_uids.items():
        kept = after.release_uids[name]
        assert kept <= uids and uids - kept <= withdrawn, f"{name} lost records: {sorted(uids - kept)}"
    for folder in sorted((root / "releases").glob("v*")):
        assert_checksums(folder)
    assert plan_upgrade(root) == [], "an opened node still has something to upgrade"

    new_config = tomllib.loads((root / "node.toml").read_text(encoding="utf-8"))
    assert "defaults" not in new_config
    if "defaults" in old_config:
        assert tomllib.loads((root / "node.toml.bak").read_text(encoding="utf-8")) == old_config
        adopted = msgspec.to_builtins(settings.defaults)
        for key, value in old_config["defaults"].items():
            assert adopted[key] == value, f"[defaults] {key} did not become the collective setting"
        assert "config.moved" in added and "settings.init" in added
        assert {k: v for k, v in old_config.items() if k != "defaults"} == new_config


@pytest.mark.parametrize("archive", PUBLISHED, ids=[p.name.removesuffix(".tar.gz") for p in PUBLISHED])
def test_upgrade_fixture_with_publications_fills_the_channel_ledger(archive: Path, tmp_path: Path) -> None:
    """The old node pushed v1 to git, withdrew a record, then pushed v1-r2 and v2 (to a bare
    repository on disk, gone now: nothing here publishes or touches a network)."""
    root, facts = unpack(archive, tmp_path)
    db = root / "coop.sqlite3"
    Node(root).close()  # the upgrade: migrations 25 (backfill) and 27 (totals) where missing

    rows = query(db, "SELECT channel, count(*), count(published_at) FROM channel_records GROUP BY channel")
    assert rows and rows[0][0] == "git" and rows[0][2] > 0, rows
    ((state, published_at, withdrawn_at, retracted_at, left_at),) = query(
        db,
        "SELECT r.state, r.published_at, r.withdrawn_at, r.retracted_at, c.withdrawn_at"
        " FROM channel_records r JOIN contributions c ON c.seq = r.seq"
        f" WHERE r.channel = 'git' AND c.uid = '{facts['uids']['to-withdraw']}'",
    )
    assert state == "tombstoned"
    assert published_at is not None and withdrawn_at == left_at
    assert retracted_at is not None and retracted_at > withdrawn_at > published_at

    # Windows that start before, at and after the withdrawal, none of them at midnight.
    now = int(query(db, "SELECT max(at) FROM publications")[0][0]) + 3_601
    since = [0, withdrawn_at - 1, withdrawn_at + 1, now - 7 * 86_400 + 17]
    conn = sqlite3.connect(db)
    try:
        totals = ledger_totals(conn, now=now, since=since)
        scanned = ledger_totals_scan(conn, now=now, since=since)
    finally:
        conn.close()
    by_key = attrgetter("channel", "route")
    assert totals and sorted(totals, key=by_key) == sorted(scanned, key=by_key)

    metrics = json.loads(coop("metrics", str(root), "--json").stdout)
    assert metrics["publish"]["git"]["published"] > 0, metrics["publish"]


@pytest.mark.parametrize("name", BROKEN_BEFORE)
def test_upgrade_fixture_served_by_a_real_process_takes_contributions(name: str, tmp_path: Path) -> None:
    root, facts = unpack(Path(__file__).parents[1] / "fixtures" / "datadirs" / f"{name}.tar.gz", tmp_path)
    untouched = files_of(root)
    dry_run = coop("upgrade", str(root), "--dry-run").stdout
    assert "repair contents-apart (before migration 8)" in dry_run and "dry run" in dry_run
    assert files_of(root) == untouched
    coop("release", str(root))  # the issue: a traceback here
    assert query(root / "coop.sqlite3", "SELECT max(version) FROM releases") == [(3,)]
    alice = facts["tokens"]["alice"]
    with running(root) as node, httpx.Client(base_url=node.url, headers=bearer(alice), timeout=30) as http:
        old = http.get(f"/api/v1/contributions/{facts['uids']['named-good']}")
        assert old.status_code == 200, old.text
        response = http.post(
            "/api/v1/contributions",
            json={"label": "good", "consent": True, "content": chat_text(code_word("upgrade"))},
        )
        assert response.status_code == 201, response.text
        # Gossip's own manifest lists released records (listed_seq, which old nodes lacked).
        for _ in range(600):
            listed = query(
                root / "coop.sqlite3", "SELECT count(*) FROM contributions WHERE listed_seq IS NOT NULL"
            )
            if listed[0][0]:
                break
            time.sleep(0.1)
        assert listed[0][0], f"no record was listed in a manifest:\n{node.log()}"
    assert coop("audit", "verify", str(root)).returncode == 0
