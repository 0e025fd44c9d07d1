"""Every action string an audit chain holds is an AuditAction, so old chains still read and verify."""

from __future__ import annotations

import re
import sqlite3
import tarfile
import tempfile
from pathlib import Path

import pytest

from coop.node.collective.audit import AuditAction

# Every action the node's code on main ever stored (from `git grep 'action='` over the history
# of src/, including the computed ones: quarantine.{release,reject}, eval.{approved,refused}).
# Each is hashed into existing chains, so each must stay a member with the same value.
STORED_ON_MAIN = (
    "settings.init",
    "settings.change",
    "proposal.open",
    "proposal.passed",
    "proposal.expired",
    "vote.cast",
    "payout.computed",
    "payout.supersede",
    "release.cut",
    "release.revise",
    "release.publish",
    "quarantine.release",
    "quarantine.reject",
    "member.add",
    "member.token",
    "member.revoke",
    "integration.add",
    "integration.revoke",
    "peer.add",
    "peer.remove",
    "identity.rotate",
    "eval.answer",
    "eval.approved",
    "eval.refused",
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datadirs"


@pytest.mark.parametrize("action", STORED_ON_MAIN)
def test_audit_action_stored_by_earlier_code_is_a_member_with_the_same_value(action: str) -> None:
    assert AuditAction(action).value == action


def test_audit_action_values_are_area_dot_verb_and_distinct() -> None:
    values = [member.value for member in AuditAction]
    assert len(set(values)) == len(values)
    for value in values:
        assert re.fullmatch(r"[a-z]+\.[a-z]+", value), value


def _fixture_actions(archive: Path) -> tuple[int, set[str]]:
    """(entries, distinct actions) of the audit log in a fixture's database, as the old code left it."""
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory() as tmp:
        member = tar.getmember("node/coop.sqlite3")
        extracted = tar.extractfile(member)
        assert extracted is not None
        path = Path(tmp) / "coop.sqlite3"
        path.write_bytes(extracted.read())
        conn = sqlite3.connect(path)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_log'").fetchone():
                return 0, set()  # schema 1: no governance, no audit log yet
            (entries,) = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            return int(entries), {a for (a,) in conn.execute("SELECT DISTINCT action FROM audit_log")}
        finally:
            conn.close()


@pytest.mark.parametrize(
    "archive", sorted(FIXTURES.glob("*.tar.gz")), ids=lambda p: p.name.removesuffix(".tar.gz")
)
def test_audit_action_in_an_upgrade_fixtures_chain_is_a_member(archive: Path) -> None:
    entries, actions = _fixture_actions(archive)
    if "schema-1-" not in archive.name:
        assert entries and actions, f"{archive.name} should hold an audit chain"
    known = {member.value for member in AuditAction}
    unknown = sorted(actions - known)
    assert not unknown, f"{archive.name} holds audit actions AuditAction lacks: {unknown}"
