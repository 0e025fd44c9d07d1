"""The funnel page in a real browser (Debian's Chromium, headless, driven by Playwright).

A node whose records went out to the site channel (one withdrawn and retracted since) and
whose embargo was flipped: the admin opens /admin/funnel from the dashboard and sees the
SVG charts, the weakest stage marked in words, the policy marker; with JavaScript off the
same numbers read as tables; a member is refused (403); the static site's funnel page shows
aggregates only.  Every page is checked with axe-core.  No network edge is faked: the node
and the static file server listen on 127.0.0.1 only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from coop.node.channels.publish import publish
from coop.node.contributions.rights import withdraw_contribution
from coop.node.web.static_site import site_builder

from browsing import accessible, chromium
from factories import contribute, make_member, make_node, process
from harness import running
from nodeproc import NodeProcess, coop, free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@dataclass(frozen=True)
class Funnel:
    node: NodeProcess
    static_url: str
    admin: str
    member: str
    uids: list[str]


@pytest.fixture(scope="module")
def funnel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnel]:
    tmp = tmp_path_factory.mktemp("funnel")
    node = make_node(tmp, name="Funnel Co-op")
    published = tmp / "published-site"
    try:
        member, member_token = make_member(node, "robin")
        _, admin_token = make_member(node, "ada", admin=True)
        uids = [contribute(node, member, license="CC-BY-4.0") for _ in range(3)]
        process(node)
        node.cut_release()
        publish(node, "site", target=str(published), build_site=site_builder(node))
        node.store.write(lambda c: withdraw_contribution(c, uid=uids[0], member=member, now=node.now()))
        # The next publish retracts it there (in the same second or not: the ledger goes by order).
        publish(node, "site", target=str(published), build_site=site_builder(node))
        root = node.data.root
    finally:
        node.close()
    coop("embargo", "on", str(root), "--tag", "secret-project")  # a policy marker on today
    out = tmp / "site"
    coop("site", "build", str(root), str(out), "--node-url", "https://coop.example.org")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    static_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(static_url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with running(root) as process_:
            yield Funnel(process_, static_url, admin_token, member_token, uids)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def sign_in(page: Any, url: str, token: str, start: str) -> None:
    page.goto(f"{url}/login?next={start}")
    page.get_by_label("Member token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(start)))


def test_the_admin_sees_the_charts_with_the_weakest_stage_and_policy_marked(
    funnel: Funnel, browser: Any
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, funnel.node.url, funnel.admin, "/admin")
        page.get_by_role("link", name="The funnel").click()
        page.wait_for_url(re.compile(r"/admin/funnel$"))
        charts = page.locator("svg[role=img]")
        assert charts.count() >= 3  # one funnel per route, published, withdrawn/retracted
        for i in range(charts.count()):
            assert charts.nth(i).is_visible()
        weakest = page.locator("svg .chart-weakest")
        assert weakest.count() >= 1
        assert "weakest" in weakest.first.text_content()
        assert "weakest step:" in page.locator("#routes h3").first.inner_text()
        published = page.locator("#published svg").text_content()
        assert "site (3 records)" in published  # v1 carried all three; the withdrawal came after
        assert "embargo on" in published  # the policy marker, by its public label only
        assert "secret-project" not in page.locator("main").inner_text()
        ledger = page.locator("#channels tbody tr").first.inner_text().split("\t")
        assert ledger[:3] == ["site", "rebuild", "3"]  # channel, mode, records published on it
        retracted = page.locator("#retracted svg").text_content()
        assert "retracted from site (1 records)" in retracted  # the second publish took it off
        assert "withdrawn by members (1 records)" in retracted
        accessible(page)
    finally:
        context.close()


def test_without_javascript_the_numbers_read_as_tables(funnel: Funnel, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, funnel.node.url, funnel.admin, "/admin/funnel")
        tables = page.locator("table.chart-data")
        assert tables.count() >= 3
        assert tables.first.is_visible()
        assert "weakest step" in page.locator("#routes table").first.inner_text()
        assert page.locator("#published table caption").inner_text().startswith("Records published per day")
    finally:
        context.close()


def test_a_member_is_refused_the_funnel(funnel: Funnel, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, funnel.node.url, funnel.member, "/me")
        response = page.goto(f"{funnel.node.url}/admin/funnel")
        assert response.status == 403
        assert page.locator("svg.chart").count() == 0
    finally:
        context.close()


def test_the_static_site_funnel_shows_aggregates_only(funnel: Funnel, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{funnel.static_url}/")
        page.get_by_role("link", name="Funnel", exact=True).click()
        page.wait_for_url(re.compile(r"/funnel/?$"))
        assert page.locator("svg[role=img]").count() >= 2
        assert page.locator("svg .chart-weakest").count() >= 1
        text = page.content()
        for private in (*funnel.uids, "robin", "ada", "embargo on", "withdrawn by members"):
            assert private not in text
        accessible(page)
    finally:
        context.close()
