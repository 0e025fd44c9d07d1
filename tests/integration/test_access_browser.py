"""Gated access end to end in a real browser (Debian's Chromium, headless, driven by Playwright).

Against a real `coop serve` whose ACCESS rule needs a vote: a model builder asks for
access at /access -> the admin's "Approve" opens a proposal -> members vote (one in the
browser, one through the API) and the grant takes effect -> the builder downloads the
gated file through a signed URL (its bytes are the release's) -> the URL, past its 5
seconds, is refused -> the admin revokes the grant and a fresh URL is refused -> the
register shows the one download (who, what, when) to the admin and to the builder.
Every page is checked with axe-core.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coop.governance import apply_changes
from coop.node.collective.settings import current_settings, store_settings
from coop.node.runtime import Node

from browsing import accessible, chromium
from harness import add_member, assert_problem, bearer, chat_text, code_word, init_node, running
from nodeproc import NodeProcess, coop

pytestmark = [pytest.mark.integration, pytest.mark.browser]

GATED = "CC-BY-4.0"
URL_SECONDS = 5


@dataclass(frozen=True)
class Site:
    process: NodeProcess
    builder: str
    admin: str
    member: str


def _set_settings(root: Path, changes: dict[str, Any]) -> None:
    """The co-op's settings as a finished vote would leave them (a rules change itself needs one)."""
    node = Node(root)
    try:

        def write(conn: Any) -> None:
            changed = apply_changes(current_settings(conn).settings, changes)
            store_settings(conn, changed, at=node.now(), actor="test", via="proposal 0")

        node.store.write(write)
    finally:
        node.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("access") / "node")
    builder = coop("member", "add", str(root), "bea", "--role", "builder").stdout.strip()
    admin = add_member(root, "ada", admin=True)
    member = add_member(root, "robin")
    add_member(root, "sam")  # a third voter: the vote needs two of the three
    _set_settings(
        root,
        {
            "access.gated": [GATED],
            "access.url_seconds": URL_SECONDS,
            "rules.classes.access.admin_alone": False,
        },
    )
    with running(root) as process:
        with httpx.Client(base_url=process.url, headers=bearer(member), timeout=30) as client:
            shared = client.post(
                "/api/v1/contributions",
                json={
                    "label": "good",
                    "consent": True,
                    "format": "text",
                    "license": GATED,
                    "content": chat_text(code_word("gated")),
                },
            )
            assert shared.status_code == 201, shared.text
        with httpx.Client(base_url=process.url, headers=bearer(admin), timeout=60) as client:
            assert client.post("/api/v1/admin/process").status_code == 200
            cut = client.post("/api/v1/admin/releases")
            assert cut.status_code in (200, 201), cut.text
        yield Site(process, builder, admin, member)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def sign_in(page: Any, site: Site, token: str, start: str) -> None:
    page.goto(f"{site.process.url}/login?next={start}")
    page.get_by_label("Member token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(start)))


def _gated_file(site: Site) -> dict[str, Any]:
    summary = httpx.get(f"{site.process.url}/releases/v1").json()
    bucket = next(b for b in summary["buckets"] if b["license"] == GATED)
    entry: dict[str, Any] = next(f for f in bucket["files"] if f["path"].endswith(".jsonl"))
    return entry


def test_a_builder_asks_the_members_vote_and_the_builder_downloads_until_revoked(
    site: Site, browser: Any
) -> None:
    url = site.process.url
    gated = _gated_file(site)
    # The public route keeps the gated bucket's data to grantees.
    assert httpx.get(f"{url}/releases/v1/{gated['path']}").status_code == 403

    anyone = browser.new_context()
    builder = browser.new_context(accept_downloads=True)
    admin = browser.new_context()
    try:
        # Anyone reads the terms.
        stranger = anyone.new_page()
        stranger.goto(f"{url}/access")
        assert "re-identif" in stranger.locator("#terms").inner_text()
        assert GATED in stranger.locator("main").inner_text()
        accessible(stranger)

        # The builder asks; without accepting the terms the page says so next to the box.
        bea = builder.new_page()
        sign_in(bea, site, site.builder, "/access")
        bea.get_by_label(re.compile("Who you are")).fill("Bea Builder, Example Lab")
        bea.get_by_label("What you will use the data for").fill("fine-tune an assistant for tenants' letters")
        bea.get_by_label("The model you will train or evaluate").fill("example/tenant-7b")
        bea.get_by_label("Yes, open weights").check()
        bea.get_by_role("button", name="Send the request").click()
        bea.get_by_role("alert").wait_for()
        assert "terms" in bea.get_by_role("alert").inner_text().lower()
        assert bea.get_by_label("The model you will train or evaluate").input_value() == "example/tenant-7b"
        accessible(bea)
        bea.get_by_label("I accept the co-op's terms above").check()
        bea.get_by_role("button", name="Send the request").click()
        bea.wait_for_url(re.compile(r"/access\?done=requested"))
        assert "pending" in bea.locator("#mine").inner_text()
        accessible(bea)

        # The admin approves: the rule needs a vote, so a proposal opens.
        ada = admin.new_page()
        sign_in(ada, site, site.admin, "/admin/access")
        assert "Bea Builder, Example Lab" in ada.locator("#requests").inner_text()
        accessible(ada)
        ada.get_by_role("button", name=re.compile(r"^Approve")).first.click()
        ada.wait_for_url(re.compile(r"done=vote"))
        link = ada.locator("#requests a", has_text=re.compile(r"proposal \d+"))
        proposal = int(re.sub(r"\D", "", link.first.inner_text()))
        assert "voting" in ada.locator("#requests").inner_text()

        # Members vote: the admin in the browser, robin through the API; two of three pass it.
        ada.goto(f"{url}/governance")
        ada.locator(f"#p{proposal}").get_by_role("button", name="Yes").click()
        ada.wait_for_url(re.compile(r"done=voted"))
        voted = httpx.post(
            f"{url}/api/v1/governance/proposals/{proposal}/votes",
            json={"choice": "yes"},
            headers=bearer(site.member),
            timeout=30,
        )
        assert voted.status_code == 201, voted.text
        assert voted.json()["status"] == "passed"
        ada.goto(f"{url}/admin/access")
        assert "approved" in ada.locator("#requests").inner_text()

        # The builder downloads through the signed URL: the release's own bytes.
        bea.goto(f"{url}/access")
        assert "approved" in bea.locator("#mine").inner_text()
        button = bea.locator("#grants").get_by_role("button", name=f"Download v1/{gated['path']}")
        accessible(bea)
        with bea.expect_download() as started:
            button.click()
        download = started.value
        body = Path(download.path()).read_bytes()
        assert len(body) == gated["bytes"]
        assert hashlib.sha256(body).hexdigest() == gated["sha256"]
        signed = download.url
        assert "/gated/v1/" in signed and "sig=" in signed
        # Bound to the grantee: the same URL without the builder's session is refused.
        assert httpx.get(signed).status_code in (401, 403)

        # Past its lifetime the URL is refused, even with the builder's own session.
        time.sleep(URL_SECONDS + 1.5)
        expired = bea.request.get(signed)
        assert expired.status == 403, expired.text()
        assert "expired" in expired.text()

        # The admin revokes the grant: a URL minted a moment before stops working, and no new one is given.
        token = bearer(site.builder)
        granted = re.search(r"grant=(\d+)", signed)
        assert granted is not None
        number = int(granted.group(1))
        minted = httpx.post(
            f"{url}/api/v1/access/requests/{number}/urls",
            json={"release": "v1", "path": gated["path"]},
            headers=token,
            timeout=30,
        )
        assert minted.status_code == 201, minted.text
        ada.get_by_role("button", name=re.compile(r"^Revoke")).first.click()
        ada.wait_for_url(re.compile(r"done=revoked"))
        refused = httpx.get(f"{url}{minted.json()['url_path']}", headers=token, timeout=30)
        assert refused.status_code == 403, refused.text
        if time.time() < minted.json()["expires_at"] - 1:  # on a slow machine it may have expired too
            assert "revoked" in refused.json()["detail"], refused.text
        again = httpx.post(
            f"{url}/api/v1/access/requests/{number}/urls",
            json={"release": "v1", "path": gated["path"]},
            headers=token,
            timeout=30,
        )
        assert again.status_code == 403 and "revoked" in again.json()["detail"], again.text
        bea.goto(f"{url}/access")
        assert "revoked" in bea.locator("#mine").inner_text()
        assert bea.locator("#grants").count() == 0

        # The register: exactly the one download, who, what and when, to the admin and to the builder.
        ada.goto(f"{url}/admin/access")
        rows = ada.locator("#register tbody tr")
        assert rows.count() == 1
        row = rows.first.inner_text()
        assert "bea" in row and f"v1/{gated['path']}" in row and re.search(r"\d{4}-\d\d-\d\d", row)
        accessible(ada)
        mine = bea.locator("#register tbody tr")
        assert mine.count() == 1 and f"v1/{gated['path']}" in mine.first.inner_text()
        register = httpx.get(f"{url}/api/v1/access/register", headers=bearer(site.admin), timeout=30).json()
        assert [(r["who"], r["release"], r["path"]) for r in register] == [("bea", "v1", gated["path"])]
        assert_problem(httpx.get(f"{url}/api/v1/access/register", timeout=30), 401, "Authorization")
    finally:
        for context in (anyone, builder, admin):
            context.close()
