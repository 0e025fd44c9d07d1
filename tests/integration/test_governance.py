"""Collective governance end to end against a real node process: each switch's effect, votes, audit, payouts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import (
    add_member,
    assert_problem,
    bearer,
    chat_text,
    code_word,
    init_node,
    pipeline_held,
    running,
)
from nodeproc import NodeProcess, coop

pytestmark = pytest.mark.integration


class Co:
    """A running node with an admin and voting members, and helpers to act through HTTP."""

    def __init__(self, root: Path, node: NodeProcess, tokens: dict[str, str]) -> None:
        self.root = root
        self.node = node
        self.tokens = tokens
        self.admin = httpx.Client(base_url=node.url, headers=bearer(tokens["ada"]), timeout=30)

    def client(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=self.node.url, headers=bearer(self.tokens[name]), timeout=30)

    def share(self, *, tags: list[str] | None = None, language: str | None = None, **extra: Any) -> str:
        body: dict[str, Any] = {"label": "good", "consent": True, "content": chat_text(code_word()), **extra}
        if tags:
            body["tags"] = tags
        if language:
            body["language"] = language
        response = self.admin.post("/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["uid"])

    def process(self) -> dict[str, Any]:
        response = self.admin.post("/api/v1/admin/process")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def release(self) -> dict[str, Any]:
        response = self.admin.post("/api/v1/admin/releases")
        assert response.status_code == 201, response.text
        return dict(response.json())

    def released_uids(self, release: dict[str, Any]) -> set[str]:
        uids: set[str] = set()
        for bucket in release["buckets"]:
            text = self.node.url and (
                self.root / "releases" / release["name"] / bucket["name"] / "data.jsonl"
            )
            uids |= {json.loads(line)["uid"] for line in Path(text).read_text().splitlines()}
        return uids

    def state(self, uid: str) -> str:
        return str(self.admin.get(f"/api/v1/contributions/{uid}").json()["contribution"]["state"])


@pytest.fixture
def co(tmp_path: Path) -> Iterator[Co]:
    root = init_node(tmp_path / "node")
    tokens = {"ada": add_member(root, "ada", admin=True)}
    for name in ("ben", "cai", "dee"):
        tokens[name] = add_member(root, name)
    with pipeline_held(root), running(root) as node:
        c = Co(root, node, tokens)
        try:
            yield c
        finally:
            c.admin.close()


def _pass(co: Co, changes: dict[str, Any], reason: str = "agreed at the meeting") -> dict[str, Any]:
    """Open a proposal and vote it through (4 voters, quorum 50%: two yes votes pass it)."""
    opened = co.admin.post("/api/v1/governance/proposals", json={"changes": changes, "reason": reason})
    assert opened.status_code == 201, opened.text
    pid = opened.json()["id"]
    for name in ("ben", "cai", "dee"):
        with co.client(name) as client:
            voted = client.post(f"/api/v1/governance/proposals/{pid}/votes", json={"choice": "yes"})
        assert voted.status_code == 201, voted.text
        if voted.json()["status"] != "open":
            break
    result = dict(voted.json())
    assert result["status"] == "passed", result
    return result


def test_embargo_keeps_records_out_until_lifted(co: Co) -> None:
    tax = co.share(tags=["tax"])
    other = co.share(tags=["cooking"])
    indonesian = co.share(language="id")
    co.process()
    assert co.released_uids(co.release()) == {tax, other, indonesian}

    out = coop("embargo", "on", str(co.root), "--tag", "tax", "--language", "id").stdout
    assert "embargo on" in out
    state = httpx.get(f"{co.node.url}/api/v1/governance/state").json()
    assert state["embargo"] == {"on": True, "tags": ["tax"], "languages": ["id"]}
    new_tax = co.share(tags=["tax"])
    co.process()
    embargoed = co.release()
    assert co.released_uids(embargoed) == {other}
    # Nothing is deleted: the records wait, released or accepted.
    assert co.state(tax) == "released"
    assert co.state(new_tax) == "accepted"

    coop("embargo", "off", str(co.root))
    lifted = co.release()
    assert co.released_uids(lifted) == {tax, other, indonesian, new_tax}
    actions = [e["action"] for e in co.admin.get("/api/v1/governance/audit").json()]
    assert actions.count("settings.change") == 2


def test_embargo_of_whole_coop_by_admin_over_http(co: Co) -> None:
    uid = co.share()
    co.process()
    changed = co.admin.put("/api/v1/governance/settings", json={"changes": {"embargo.on": True}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["actor"] == "ada"
    release = co.release()
    assert release["records"] == 0
    assert co.state(uid) == "accepted"


def test_quality_freeze_keeps_contributions_safe_but_unreleased(co: Co) -> None:
    before = co.share()
    co.process()
    coop("freeze", "on", str(co.root))
    during = co.share()  # still accepted and kept
    assert co.process() == {"paused": True, "accepted": 0, "quarantined": 0, "duplicate": 0, "skipped": 0}
    assert co.state(during) == "waiting_room"
    refused = co.admin.post("/api/v1/admin/releases")
    body = assert_problem(refused, 409, "quality_freeze")
    assert "freeze" in body["detail"]
    cli = coop("release", str(co.root), check=False)
    assert cli.returncode == 4
    assert cli.stderr.count("\n") == 1
    assert not list((co.root / "releases").glob("v*"))

    coop("freeze", "off", str(co.root))
    co.process()
    assert co.released_uids(co.release()) == {before, during}


def test_volume_cap_holds_per_month(co: Co) -> None:
    _pass(co, {"volume_cap.monthly_records": 3}, reason="pace our releases")
    uids = [co.share() for _ in range(5)]
    co.process()
    first = co.release()
    assert co.released_uids(first) == set(uids[:3])  # the oldest first
    second = co.release()
    assert co.released_uids(second) == set(uids[:3])  # the month's cap is spent
    assert [co.state(uid) for uid in uids[3:]] == ["accepted", "accepted"]


def test_preference_shift_changes_only_later_contributions(co: Co) -> None:
    early = co.share()
    _pass(co, {"defaults.ai_use": "train-ai=n, search=y", "defaults.scope": "public"})
    late = co.share()
    explicit = co.share(ai_use="train-ai=y")
    co.process()
    release = co.release()
    records = {}
    for bucket in release["buckets"]:
        path = co.root / "releases" / release["name"] / bucket["name"] / "data.jsonl"
        for line in path.read_text().splitlines():
            row = json.loads(line)
            records[row["uid"]] = row["ai_use"]
    assert records[early] == "search=y, train-ai=y"
    assert records[late] == "search=y, train-ai=n"
    assert records[explicit] == "train-ai=y"


def test_proposal_missing_quorum_changes_nothing(co: Co) -> None:
    before = co.admin.get("/api/v1/governance/settings").json()
    opened = co.admin.post(
        "/api/v1/governance/proposals",
        json={"changes": {"defaults.license": "CC0-1.0"}, "reason": "simpler licence", "voting_days": 1},
    ).json()
    with co.client("ben") as ben:
        assert (
            ben.post(f"/api/v1/governance/proposals/{opened['id']}/votes", json={"choice": "yes"}).json()[
                "status"
            ]
            == "open"
        )
    # A day passes (behind the node's back: the clock is not ours to move).
    with closing(sqlite3.connect(co.root / "coop.sqlite3")) as conn, conn:
        conn.execute("UPDATE proposals SET closes_at = 1 WHERE id = ?", (opened["id"],))
    listed = coop("proposals", str(co.root), "--json").stdout
    status = {p["id"]: p["status"] for p in json.loads(listed)}
    assert status[opened["id"]] == "expired"
    after = co.admin.get("/api/v1/governance/settings").json()
    assert after["settings"] == before["settings"]
    assert after["version"] == before["version"]
    with co.client("cai") as cai:
        late = cai.post(f"/api/v1/governance/proposals/{opened['id']}/votes", json={"choice": "yes"})
    assert_problem(late, 409, "proposal")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"colour": "red"}, "colour", id="unknown-setting"),
        pytest.param({"embargo.on": "sometimes"}, "embargo.on", id="wrong-type"),
        pytest.param({"volume_cap.monthly_records": -1}, "volume_cap.monthly_records", id="cap-below-zero"),
        pytest.param({"payout.contributors_bp": 8000}, "payout.commons_bp", id="shares-not-100"),
    ],
)
def test_governance_invalid_change_is_problem_naming_field(
    co: Co, changes: dict[str, Any], field: str
) -> None:
    response = co.admin.post("/api/v1/governance/proposals", json={"changes": changes, "reason": "try"})
    assert_problem(response, 422, field)


def test_governance_votes_refused_with_problems(co: Co) -> None:
    opened = co.admin.post(
        "/api/v1/governance/proposals", json={"changes": {"defaults.eval": "n"}, "reason": "opt-in"}
    ).json()
    url = f"/api/v1/governance/proposals/{opened['id']}/votes"
    assert_problem(
        httpx.post(co.node.url + url, json={"choice": "yes"}), 401, "Authorization"
    )  # not a member
    with co.client("ben") as ben:
        assert ben.post(url, json={"choice": "yes"}).status_code == 201
        assert_problem(ben.post(url, json={"choice": "no"}), 409, "voter")  # double vote
        assert_problem(ben.post(url, json={"choice": "maybe"}), 422, "choice")
    newcomer = add_member(co.root, "newcomer")
    with closing(sqlite3.connect(co.root / "coop.sqlite3")) as conn, conn:
        conn.execute("UPDATE members SET created_at = created_at + 100 WHERE name = 'newcomer'")
    with httpx.Client(base_url=co.node.url, headers=bearer(newcomer)) as late:
        assert_problem(late.post(url, json={"choice": "yes"}), 403, "voter")
    with co.client("cai") as cai:
        assert cai.post(url, json={"choice": "yes"}).json()["status"] == "passed"
    with co.client("dee") as dee:
        assert_problem(dee.post(url, json={"choice": "yes"}), 409, "proposal")  # closed
    with co.client("ben") as ben:
        assert_problem(ben.put("/api/v1/governance/settings", json={"changes": {"embargo.on": True}}), 403)
    needs_vote = co.admin.put("/api/v1/governance/settings", json={"changes": {"defaults.scope": "node"}})
    assert_problem(needs_vote, 409, "defaults.scope")


def test_audit_chain_catches_a_row_edited_behind_the_nodes_back(co: Co) -> None:
    coop("freeze", "on", str(co.root))
    coop("freeze", "off", str(co.root))
    ok = coop("audit", "verify", str(co.root))
    assert "intact" in ok.stdout
    entries = co.admin.get("/api/v1/governance/audit").json()
    target = next(e for e in entries if e["action"] == "settings.change")
    with closing(sqlite3.connect(co.root / "coop.sqlite3")) as conn, conn:
        conn.execute(
            "UPDATE audit_log SET payload = ? WHERE seq = ?",
            (json.dumps({"changes": {"quality_freeze": False}}).encode(), target["seq"]),
        )
    broken = coop("audit", "verify", str(co.root), check=False)
    assert broken.returncode == 9
    assert f"entry {target['seq']}" in broken.stderr
    assert broken.stderr.count("\n") == 1
    with co.client("ben") as ben:
        over_http = ben.get("/api/v1/governance/audit/verify").json()
    assert over_http["ok"] is False
    assert over_http["first_bad"] == target["seq"]


def test_payouts_sum_exactly_and_skip_withdrawn(co: Co) -> None:
    named = [co.share(attribution="pseudonym:Night Owl") for _ in range(2)]
    corrected = co.share(label="fail", correction="The answer is 42.", attribution="username")
    anonymous = co.share(attribution="anonymous")
    co.process()
    co.release()
    assert co.admin.delete(f"/api/v1/contributions/{named[1]}").status_code == 200
    out = coop(
        "payouts", str(co.root), "--release", "v1", "--amount", "1000.00", "--currency", "EUR", "--json"
    )
    ledger = json.loads(out.stdout)["ledger"]
    lines = {line["payee"]: line for line in ledger["lines"]}
    assert sum(Decimal(line["amount"]) for line in ledger["lines"]) == Decimal("1000.00")
    assert ledger["excluded_withdrawn"] == 1
    assert lines["commons"]["amount"] == "300.00"
    # weights: Night Owl 1 (one left), ada's corrected fail 3, the anonymous one 1: 700 over 5
    assert lines["Night Owl"]["amount"] == "140.00"
    assert lines["ada"]["amount"] == "420.00"
    # Anonymous records are paid on one public line for all of them; the internal ledger pays ada.
    assert lines["anonymous contributors"]["amount"] == "140.00"
    members = json.loads(next((co.root / "payouts" / "members").glob("payout-1-v1.json")).read_text())
    assert {line["payee"]: line["amount"] for line in members["lines"]}["ada"] == "700.00"
    assert anonymous != corrected
    csv_path = next((co.root / "payouts").glob("payout-1-v1.csv"))
    assert csv_path.read_text().splitlines()[0] == "payee,kind,records,weight,amount,currency"
    audit = co.admin.get("/api/v1/governance/audit").json()
    assert audit[-1]["action"] == "payout.computed"
    # v1 is paid: a second payout is refused unless it supersedes the first, with a reason.
    twice = co.admin.post(
        "/api/v1/governance/payouts", json={"release": "v1", "amount": "10.01", "currency": "EUR"}
    )
    assert_problem(twice, 409, "release")
    again = coop(
        "payouts", str(co.root), "--release", "v1", "--amount", "5.00", "--currency", "EUR", check=False
    )
    assert again.returncode == 4 and again.stderr.count("\n") == 1
    over_http = co.admin.post(
        "/api/v1/governance/payouts",
        json={"release": "v1", "amount": "10.01", "currency": "EUR", "supersede": "the buyer paid 10.01"},
    )
    assert over_http.status_code == 201
    assert over_http.json()["supersedes"] == 1
    assert sum(Decimal(line["amount"]) for line in over_http.json()["ledger"]["lines"]) == Decimal("10.01")
    supersede = next(
        e for e in co.admin.get("/api/v1/governance/audit").json() if e["action"] == "payout.supersede"
    )
    assert (
        supersede["payload"]["superseded"] == 1 and supersede["payload"]["reason"] == "the buyer paid 10.01"
    )
    bad = co.admin.post(
        "/api/v1/governance/payouts", json={"release": "v1", "amount": "10.001", "currency": "EUR"}
    )
    assert_problem(bad, 422, "amount")
