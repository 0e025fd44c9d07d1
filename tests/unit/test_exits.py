"""Every exit goes through the disclosure policy: a walk over the node's routes and channels.

Each route of the HTTP app is classified below, as an exit (something derived
from members' records leaves by it) or not, with the reason.  A route that is
not in the table fails the walk, so a new route must be thought about.  Each
exit is then requested on a node holding records in every scope and state,
while a profiler counts calls into the policy's functions: an exit that
answers without asking the policy fails.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.federation import Entry
from coop.governance import EvalConsent, License, Scope, disclosure
from coop.node.contributions.rights import withdraw_contribution
from coop.node.http.app import create_app
from coop.node.members.accounts import Member
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process, record_for

_POLICY_CODES = {
    disclosure.disclose.__code__,
    disclosure.admit.__code__,
    disclosure.disclose_tombstone.__code__,
}


class PolicyCalls:
    """Counts calls into the policy, in this thread and in threads started while counting."""

    def __init__(self) -> None:
        self.count = 0

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in _POLICY_CODES:
            self.count += 1

    def __enter__(self) -> PolicyCalls:
        threading.setprofile(self._profile)  # type: ignore[arg-type]
        sys.setprofile(self._profile)  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Exit:
    """A route by which record-derived data leaves: who receives it and how to ask for it."""

    audience: str
    path: str  # the concrete path to request (placeholders filled from the fixture)
    auth: str = "none"  # none | member | admin | session-member | session-admin


@dataclass(frozen=True)
class NotExit:
    reason: str


# Every route of the app, by (method, path template).  HEAD and OPTIONS are the framework's.
ROUTES: dict[tuple[str, str], Exit | NotExit] = {
    # -- releases: files and summaries of what a cut admitted
    ("GET", "/api/v1/releases"): NotExit(
        "release summaries: counts fixed by the cut, which asked the policy"
    ),
    ("GET", "/releases"): NotExit("release summaries: counts fixed by the cut"),
    ("GET", "/api/v1/releases/{version:str}"): NotExit("a release summary: counts fixed by the cut"),
    ("GET", "/releases/{version:str}"): NotExit("a release summary: counts fixed by the cut"),
    ("GET", "/releases/{version:str}/release.dsse.json"): NotExit(
        "the signed summary of the files a cut or revision wrote: checksums, no record"
    ),
    ("GET", "/releases/{version:str}/{path:path}"): Exit("file", "/releases/v1/cc0/data.jsonl"),
    ("GET", "/releases/federated"): NotExit("federated release summaries: counts fixed by the cut"),
    ("GET", "/releases/federated/{version:str}"): NotExit("a federated release summary"),
    ("GET", "/releases/federated/{version:str}/release.dsse.json"): NotExit(
        "the signed summary of the files a federated cut wrote: checksums, no record"
    ),
    ("GET", "/releases/federated/{version:str}/{path:path}"): Exit(
        "file", "/releases/federated/v1/cc0/data.jsonl"
    ),
    ("GET", "/gated/{release:str}/{path:path}"): NotExit(
        "a gated release file the cut wrote, only to its grantee through a signed URL; held while a"
        " withdrawal awaits its revision (ensure_serving asks the policy): tests/unit/test_gated_download_http.py"
    ),
    ("GET", "/robots.txt"): NotExit("bucket-level Content-Usage of releases already cut, no record"),
    # -- public pages over the catalogue
    ("GET", "/browse"): Exit("public", "/browse"),
    ("GET", "/browse/{uid:str}"): Exit("public", "/browse/{public_uid}"),
    ("GET", "/feed.atom"): Exit("public", "/feed.atom"),  # highlighted records' previews
    ("GET", "/leaderboards"): NotExit(
        "aggregates over the catalogue, which only the policy fills; its embargo filter is the policy's"
        " rule in SQL (test_embargo_sql_catalogue_and_cut_agree_with_the_policy)"
    ),
    ("GET", "/datasets"): NotExit("release summaries as a page: counts fixed by the cut"),
    ("GET", "/datasets/{name:str}"): NotExit("a release summary as a page, with links to its files"),
    ("GET", "/"): NotExit("home page: counts and links"),
    ("GET", "/terms"): NotExit("static text"),
    ("GET", "/faq"): NotExit("static text"),
    ("GET", "/bounties"): NotExit("bounty goals and counts per tag, no record"),
    ("GET", "/federation"): NotExit("peers and origins, no record"),
    ("GET", "/governance"): NotExit("settings, proposals and votes"),
    # -- payouts: public ledgers
    ("GET", "/api/v1/governance/payouts"): NotExit(
        "ledgers as computed: computing one asks the policy (test_exits_payout_ledgers_...)"
    ),
    ("GET", "/api/v1/governance/payouts/{payout_id:str}/csv"): NotExit("a ledger as computed, as CSV"),
    ("POST", "/api/v1/governance/payouts"): NotExit("admin action; answers the ledger read by the GET exits"),
    # -- federation: peers pull through the signed protocol (exercised directly below)
    ("POST", "/federation/v1/{step:str}"): NotExit("peer protocol: checked through FederationService.fetch"),
    ("GET", "/api/v1/federation/identity"): NotExit("the node's public key"),
    ("GET", "/api/v1/federation/origins"): NotExit("origins and counts"),
    ("GET", "/api/v1/federation/origins/{origin:str}"): NotExit("manifest heads of an origin"),
    ("GET", "/api/v1/federation/origins/{origin:str}/manifests/{seq:str}"): NotExit(
        "signed manifests as received, for this co-op's admins only (test_exits_signed_manifests_...)"
    ),
    ("GET", "/api/v1/federation/origins/{origin:str}/records"): Exit(
        "federated", "/api/v1/federation/origins/{origin}/records"
    ),
    ("GET", "/api/v1/federation/peers"): NotExit("pinned peers"),
    ("GET", "/api/v1/federation/roster"): NotExit("the roster: member co-ops' ids, keys, names, URLs"),
    # -- gated access: requests, decisions, signed URLs and the register; the files go out by /gated
    ("GET", "/access"): NotExit("the co-op's terms and the signed-in builder's own requests, no record"),
    ("GET", "/admin/access"): NotExit("admins: requests and the download register, no record"),
    ("GET", "/api/v1/access/terms"): NotExit("the co-op's terms of access"),
    ("GET", "/api/v1/access/requests"): NotExit("access requests (own; admins all), no record"),
    ("GET", "/api/v1/access/requests/{number:str}"): NotExit("one access request, no record"),
    ("GET", "/api/v1/access/register"): NotExit("who downloaded which gated file when (own; admins all)"),
    ("POST", "/access/requests"): NotExit("a builder asks for access"),
    ("POST", "/access/requests/{number:str}/download"): NotExit(
        "mints a signed URL for the grantee and redirects to /gated (the exit above)"
    ),
    ("POST", "/admin/access/requests/{number:str}/{decision:str}"): NotExit("admin decides a request"),
    ("POST", "/api/v1/access/requests"): NotExit("a builder asks for access"),
    ("POST", "/api/v1/access/requests/{number:str}/approve"): NotExit("admin approves (or opens a vote)"),
    ("POST", "/api/v1/access/requests/{number:str}/refuse"): NotExit("admin refuses"),
    ("POST", "/api/v1/access/requests/{number:str}/revoke"): NotExit("admin revokes a grant"),
    ("POST", "/api/v1/access/requests/{number:str}/urls"): NotExit(
        "a signed URL for the grantee's own grant; the file goes out by /gated"
    ),
    # -- joint actions: signed documents co-ops exchange (what they hold back), no record
    ("GET", "/api/v1/federation/actions"): NotExit("joint actions and who signed them, no record"),
    ("GET", "/api/v1/federation/actions/{action:str}"): NotExit("a joint action and who signed it"),
    ("POST", "/api/v1/federation/actions"): NotExit("admin proposes a joint action"),
    ("POST", "/api/v1/federation/actions/{action:str}/sign"): NotExit("admin signs a joint action"),
    ("POST", "/api/v1/federation/actions/{action:str}/end"): NotExit("admin signs a joint action's end"),
    ("GET", "/federation/actions"): NotExit("joint actions as a page, no record"),
    ("POST", "/federation/actions"): NotExit("admin proposes a joint action"),
    ("POST", "/federation/actions/{action:str}/{decision:str}"): NotExit("admin signs or ends an action"),
    # -- evaluation: aggregates only (exercised directly below)
    ("GET", "/api/v1/eval/local/identity"): NotExit("the node's eval identity"),
    ("POST", "/api/v1/eval/local"): NotExit("eval answers: checked through Evaluation._eligible"),
    ("GET", "/api/v1/admin/eval/requests"): NotExit("requests received, no record"),
    ("POST", "/api/v1/admin/eval/requests/{digest:str}/{decision:str}"): NotExit("admin decision"),
    ("POST", "/api/v1/admin/eval/reports"): NotExit("admin publishes a signed eval report: no record"),
    ("DELETE", "/api/v1/admin/eval/reports/{digest:str}"): NotExit("admin unpublishes a report"),
    ("GET", "/api/v1/eval/reports"): NotExit(
        "published eval reports: aggregates co-ops attested, as each consented (test_eval_publication)"
    ),
    ("GET", "/eval/reports/{name:str}"): NotExit(
        "a signed eval report, served only when every co-op in it consented to be named"
    ),
    # -- the member's own data
    ("GET", "/api/v1/me"): NotExit("the member's account"),
    ("PATCH", "/api/v1/me"): NotExit("the member's own announce choice; answers the account, no record"),
    ("GET", "/api/v1/me/contributions"): Exit("member", "/api/v1/me/contributions", auth="member"),
    ("GET", "/api/v1/me/contributions.jsonl"): Exit(
        "member", "/api/v1/me/contributions.jsonl", auth="member"
    ),
    ("GET", "/api/v1/contributions/{uid:str}"): Exit(
        "member", "/api/v1/contributions/{public_uid}", auth="member"
    ),
    ("PATCH", "/api/v1/contributions/{uid:str}"): NotExit("the member edits their own record"),
    ("DELETE", "/api/v1/contributions/{uid:str}"): NotExit("the member withdraws their own record"),
    ("POST", "/api/v1/contributions"): NotExit("intake"),
    ("POST", "/api/v1/contributions/ingest"): NotExit("intake"),
    ("POST", "/api/v1/redact/preview"): NotExit("echoes the caller's own text, redacted"),
    ("POST", "/api/v1/metrics/events"): NotExit("intake of funnel counts"),
    ("GET", "/me"): Exit("member", "/me", auth="session-member"),
    ("GET", "/me/export.jsonl"): Exit("member", "/me/export.jsonl", auth="session-member"),
    ("GET", "/me/withdraw/{uid:str}"): NotExit("a confirmation form for the member's own record"),
    ("POST", "/me/withdraw/{uid:str}"): NotExit("the member withdraws their own record"),
    ("POST", "/me/announce"): NotExit("the member's choice to have their released chats announced"),
    ("GET", "/me/correct/{uid:str}"): Exit("member", "/me/correct/{public_uid}", auth="session-member"),
    ("POST", "/me/correct/{uid:str}"): NotExit("the member corrects their own record"),
    ("GET", "/contribute"): NotExit("intake form"),
    ("POST", "/contribute"): NotExit("intake"),
    ("POST", "/contribute/preview"): NotExit("echoes the caller's own text, redacted"),
    # -- admins
    ("GET", "/api/v1/admin/waiting-room"): Exit("admin", "/api/v1/admin/waiting-room", auth="admin"),
    ("GET", "/api/v1/admin/quarantine"): Exit("admin", "/api/v1/admin/quarantine", auth="admin"),
    ("GET", "/api/v1/admin/quarantine/{uid:str}"): NotExit("an item under review (needs a quarantined one)"),
    ("POST", "/api/v1/admin/quarantine/{uid:str}/{decision:str}"): NotExit("admin decision"),
    ("POST", "/api/v1/admin/process"): NotExit("admin action"),
    ("POST", "/api/v1/admin/releases"): NotExit("cuts a release: the cut asks the policy (admit)"),
    ("GET", "/api/v1/admin/retention"): NotExit("counts"),
    ("GET", "/admin"): NotExit("admin dashboard: counts and queues"),
    ("GET", "/admin/funnel"): NotExit("admins: stage counts, yields and daily counts per channel, no record"),
    ("POST", "/admin/process"): NotExit("admin action"),
    ("POST", "/admin/release"): NotExit("cuts a release: the cut asks the policy (admit)"),
    ("POST", "/admin/embargo"): NotExit("admin switch"),
    ("POST", "/admin/freeze"): NotExit("admin switch"),
    ("GET", "/admin/review/{uid:str}"): NotExit("an item under review"),
    ("POST", "/admin/review/{uid:str}"): NotExit("admin decision"),
    ("POST", "/admin/bounties"): NotExit("admin action"),
    ("POST", "/admin/highlight/{uid:str}"): NotExit("admin action: marks a record for the feed"),
    ("POST", "/admin/bounties/{bounty_id:str}/close"): NotExit("admin action"),
    # -- governance
    ("POST", "/api/v1/governance/proposals"): NotExit("governance"),
    ("GET", "/api/v1/governance/proposals"): NotExit("governance"),
    ("GET", "/api/v1/governance/settings"): NotExit("governance"),
    ("PUT", "/api/v1/governance/settings"): NotExit("governance"),
    ("GET", "/api/v1/governance/state"): NotExit("governance"),
    ("GET", "/api/v1/governance/proposals/{proposal:str}"): NotExit("governance"),
    ("POST", "/api/v1/governance/proposals/{proposal:str}/votes"): NotExit("governance"),
    ("GET", "/api/v1/governance/audit"): NotExit("the audit chain: settings and actions, no record content"),
    ("GET", "/api/v1/governance/audit/verify"): NotExit("governance"),
    ("POST", "/governance/proposals"): NotExit("governance"),
    ("POST", "/governance/proposals/{proposal:str}/vote"): NotExit("governance"),
    # -- the node
    ("GET", "/api/v1/node"): NotExit("node information"),
    ("GET", "/healthz"): NotExit("health"),
    ("GET", "/metrics"): NotExit("counts"),
    ("GET", "/api/v1/metrics"): NotExit("counts"),
    ("GET", "/login"): NotExit("sign-in"),
    ("POST", "/login"): NotExit("sign-in"),
    ("POST", "/logout"): NotExit("sign-out"),
}
_FRAMEWORK_PREFIXES = ("/schema", "/static")


def _app_routes(node: Node) -> set[tuple[str, str]]:
    app = create_app(node, background=False)
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if route.path.startswith(_FRAMEWORK_PREFIXES):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method not in ("HEAD", "OPTIONS"):
                    found.add((method, route.path))
    return found


def test_exits_every_route_is_classified_as_an_exit_or_not(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        routes = _app_routes(node)
    finally:
        node.close()
    unclassified = sorted(routes - ROUTES.keys())
    assert not unclassified, f"classify these routes in tests/unit/test_exits.py: {unclassified}"
    gone = sorted(ROUTES.keys() - routes)
    assert not gone, f"these classified routes no longer exist: {gone}"


@dataclass
class Populated:
    node: Node
    admin_token: str
    member_token: str
    public_uid: str
    withdrawn_uid: str


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """A node with records in every scope, released, one withdrawn (its revision not yet run),
    one in the waiting room and one in quarantine, a payout, and a catalogue."""
    node = make_node(tmp_path_factory.mktemp("exits"))
    _, admin_token = make_member(node, "root", admin=True)
    member, member_token = make_member(node, "ada")
    uids = {
        scope: [contribute(node, member, scope=scope, license="CC0-1.0") for _ in range(2)]
        for scope in ("public", "federation", "node")
    }
    contribute(node, member, scope="public", license="CC0-1.0", attribution="anonymous")
    contribute(node, member, text=_MANY_PII)
    process(node)
    contribute(node, member)  # stays in the waiting room
    node.cut_release()
    node.cut_federated_release()
    node.index_catalog()
    # Highlighted (the feed carries it, through the previews): the withdrawn one too.
    for uid in uids["public"]:
        node.store.write(partial(_highlight, node, uid))
    node.payout(1, amount="10.00", currency="EUR", actor="root")
    _withdraw(node, member, uids["public"][1])
    node.store.write(_mirror_from_a_peer)
    try:
        yield Populated(node, admin_token, member_token, uids["public"][0], uids["public"][1])
    finally:
        node.close()


_MANY_PII = (
    "User: write to a@example.org, b@example.org, c@example.org, d@example.org, e@example.org, "
    "f@example.org and g@example.org\nAssistant: Done."
)


PEER = "ab" * 32


def _mirror_from_a_peer(conn: Any) -> None:
    """One public and one federation-scope record held for another co-op, as gossip stores them."""
    for uid, scope in (("peer-public", Scope.PUBLIC), ("peer-federation", Scope.FEDERATION)):
        # Real record bytes: a mirror's terms are read from them (a row they contradict is shown to no one).
        entry, data = record_for(Entry(uid, "", License.CC0, "", EvalConsent.YES, scope))
        conn.execute(
            "INSERT INTO mirror_records (hash, origin, uid, license, ai_use, eval, scope, record, received_at)"
            " VALUES (?, ?, ?, 'CC0-1.0', '', 'y', ?, ?, 0)",
            (entry.hash, PEER, uid, scope.value, data),
        )


def _highlight(node: Node, uid: str, conn: Any) -> None:
    from coop.node.releases.highlights import set_highlight

    set_highlight(conn, uid=uid, on=True, actor="root", at=node.now(), signer=node.signer)


def _withdraw(node: Node, member: Member, uid: str) -> None:
    node.store.write(lambda c: withdraw_contribution(c, uid=uid, member=member, now=node.now()))


EXITS = sorted(
    (key, value) for key, value in ROUTES.items() if isinstance(value, Exit) and value.audience != "file"
)


def _request(populated: Populated, method: str, path: str, auth: str) -> tuple[Any, int]:
    """Request ``path`` as ``auth``; return the response and how often the policy was asked."""
    node = populated.node
    headers = {"accept": "application/json"}
    if auth in ("member", "admin"):
        token = populated.member_token if auth == "member" else populated.admin_token
        headers["authorization"] = f"Bearer {token}"
    with PolicyCalls() as calls, TestClient(create_app(node, background=False)) as client:
        if auth.startswith("session-"):
            token = populated.member_token if auth == "session-member" else populated.admin_token
            origin = str(client.base_url).rstrip("/")
            form = client.get("/login").text  # the sign-in page sets the form's token and its cookie
            login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            signed = client.post(
                "/login",
                data={"token": token, "next": "/me", "login_csrf": login_csrf},
                headers={"origin": origin},
                follow_redirects=False,
            )
            assert signed.status_code == 303, signed.text
            headers["accept"] = "text/html"
        before = calls.count
        response = client.request(method, path, headers=headers, follow_redirects=False)
        return response, calls.count - before


@pytest.mark.parametrize(("route", "exit_"), EXITS, ids=[f"{m} {p}" for (m, p), _ in EXITS])
def test_exits_each_exit_asks_the_disclosure_policy(
    populated: Populated, route: tuple[str, str], exit_: Exit
) -> None:
    path = exit_.path.format(public_uid=populated.public_uid, origin=PEER)
    response, asked = _request(populated, route[0], path, exit_.auth)
    assert response.status_code < 300, f"{route}: {response.status_code} {response.text[:300]}"
    assert asked > 0, f"{route[0]} {route[1]} answered without asking the disclosure policy"


FILES = sorted(
    (key, value) for key, value in ROUTES.items() if isinstance(value, Exit) and value.audience == "file"
)


@pytest.mark.parametrize(("route", "exit_"), FILES, ids=[f"{m} {p}" for (m, p), _ in FILES])
def test_exits_release_files_ask_the_policy_while_a_withdrawal_awaits_its_revision(
    populated: Populated, route: tuple[str, str], exit_: Exit
) -> None:
    """A release file holding a record withdrawn since the cut is not served until revised."""
    response, asked = _request(populated, route[0], exit_.path, exit_.auth)
    assert asked > 0, f"{route[1]} served a release file without asking the disclosure policy"
    assert response.status_code == 503, response.text[:300]
    assert populated.withdrawn_uid not in response.text


def test_exits_peer_record_pulls_ask_the_policy(populated: Populated) -> None:
    node = populated.node
    hashes = node.store.read(
        lambda c: [
            r[0] for r in c.execute("SELECT record_sha256 FROM contributions WHERE record_sha256 IS NOT NULL")
        ]
    )
    assert _asked(lambda: node.federation.fetch(hashes)) > 0


def test_exits_payout_ledgers_are_computed_through_the_policy(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        member, _ = make_member(node, "ben")
        contribute(node, member, license="CC0-1.0", scope="public", attribution="anonymous")
        process(node)
        node.cut_release()
        assert _asked(lambda: node.payout(1, amount="1.00", currency="EUR", actor="root")) > 0
    finally:
        node.close()


def test_exits_eval_answers_score_only_what_the_policy_allows(populated: Populated) -> None:
    from types import SimpleNamespace

    from coop.eval.request import Filters

    request = SimpleNamespace(request=SimpleNamespace(filters=Filters()))
    scored: list[object] = []
    asked = _asked(lambda: scored.extend(populated.node.evaluation._eligible(request)))  # type: ignore[arg-type]
    assert asked > 0 and scored
    assert populated.withdrawn_uid not in {r.uid for r in scored}  # type: ignore[attr-defined]


def _asked(fn: Callable[[], object]) -> int:
    with PolicyCalls() as calls:
        fn()
    return calls.count


def test_exits_mirrored_listing_shows_the_public_only_public_rows(populated: Populated) -> None:
    response, _ = _request(populated, "GET", f"/api/v1/federation/origins/{PEER}/records", "none")
    assert [row["uid"] for row in response.json()] == ["peer-public"]
    response, _ = _request(populated, "GET", f"/api/v1/federation/origins/{PEER}/records", "admin")
    assert sorted(row["uid"] for row in response.json()) == ["peer-federation", "peer-public"]


def test_exits_signed_manifests_are_for_admins_and_the_public_sees_only_heads_and_switches(
    populated: Populated,
) -> None:
    node = populated.node
    node.federation.issue(force=True)
    own = node.identity.node_id
    path = f"/api/v1/federation/origins/{own}/manifests/1"
    response, _ = _request(populated, "GET", path, "none")
    assert response.status_code == 401, "a manifest lists federation-scope records: not for the public"
    response, _ = _request(populated, "GET", path, "member")
    assert response.status_code == 403
    response, _ = _request(populated, "GET", path, "admin")
    assert response.status_code == 200 and "payload" in response.json()
    response, _ = _request(populated, "GET", f"/api/v1/federation/origins/{own}", "none")
    assert response.json()["origin"]["embargo"]["on"] is False


# -- publishing channels ------------------------------------------------------------------------


def test_exits_every_channel_publishes_only_after_asking_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each channel ships release folders the cut or a revision wrote; before the files leave,
    publish() asks the policy about withdrawals they may still hold, and refuses while it says no."""
    import subprocess

    from test_channel_hf import FakeHub  # the Hub's in-memory stand-in (the one mock)

    from coop.node.channels.publish import CHANNELS, publish
    from coop.node.errors import BusyError
    from coop.node.web.static_site import site_builder

    node = make_node(tmp_path)
    try:
        member, _ = make_member(node, "ben")
        kept = contribute(node, member, scope="public", license="CC0-1.0")
        gone = contribute(node, member, scope="public", license="CC0-1.0")
        process(node)
        node.cut_release()
        _withdraw(node, member, gone)
        # A revision that failed (or a withdrawal just after it): the files still hold the record.
        monkeypatch.setattr(type(node), "revise_releases", lambda self, wait=0.0: None)
        bare = tmp_path / "bare.git"
        subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True, timeout=60)
        targets = {
            "git": str(bare),
            "site": str(tmp_path / "site"),
            "hf": "coop/chats",
            "bluesky": "coop.example.org",  # stopped before any post: no PDS is reached
        }
        assert set(targets) == set(CHANNELS), "a new channel: add it to this walk"
        for channel, target in targets.items():
            api = FakeHub() if channel == "hf" else None
            with PolicyCalls() as calls, pytest.raises(BusyError):
                publish(node, channel, target=target, api=api, build_site=site_builder(node))  # type: ignore[arg-type]
            assert calls.count > 0, f"{channel} published without asking the disclosure policy"
        monkeypatch.undo()
        node.revise_releases()
        shipped = publish(node, "site", target=targets["site"], build_site=site_builder(node))
        assert shipped.shipped
        site = tmp_path / "site"
        text = "".join(p.read_text(errors="ignore") for p in site.rglob("*.jsonl"))
        assert kept in text and gone not in text
    finally:
        node.close()
