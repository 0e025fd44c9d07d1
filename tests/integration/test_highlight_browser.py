"""The admin's highlight button in a real browser (Debian's Chromium via Playwright, JavaScript
off): the record page offers it to an admin only, it posts with the session's CSRF token, the
page says what happened, axe finds nothing serious, and the node's /feed.atom then carries the
record.  A real node process on 127.0.0.1; nothing is faked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import feedparser
import httpx
import pytest

from browsing import accessible, chromium
from factories import released_root
from nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@dataclass(frozen=True)
class Served:
    url: str
    admin_token: str
    uid: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root, (uid,), admin_token = released_root(
        tmp_path_factory.mktemp("highlight"), "Button Co-op", license="CC0-1.0", admin=True
    )
    assert admin_token is not None
    server = NodeProcess(root).start()
    try:
        yield Served(server.url, admin_token, uid)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _sign_in(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/admin")
    page.get_by_label("Member token").fill(served.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/admin(\?|$)"))


def test_highlight_browser_admin_button_puts_the_record_in_the_feed(served: Served, browser: Any) -> None:
    record = f"{served.url}/browse/{served.uid}"
    visitor = browser.new_context(java_script_enabled=False)
    admin = browser.new_context(java_script_enabled=False)
    try:
        page = visitor.new_page()
        page.goto(record)
        assert page.get_by_role("button", name="Highlight in the Atom feed").count() == 0
        desk = admin.new_page()
        _sign_in(desk, served)
        desk.goto(record)
        desk.get_by_role("button", name="Highlight in the Atom feed").click()
        desk.wait_for_url(re.compile(r"done=highlighted"))
        assert "the Atom feed carries this record" in desk.locator("[role=status]").inner_text()
        assert desk.get_by_role("button", name="Remove the highlight").count() == 1
        feed = feedparser.parse(httpx.get(f"{served.url}/feed.atom", timeout=30).content)
        assert any(entry.link.endswith(f"/browse/{served.uid}") for entry in feed.entries)
    finally:
        visitor.close()
        admin.close()


def test_highlight_browser_record_page_with_the_button_is_accessible(served: Served, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        _sign_in(page, served)
        page.goto(f"{served.url}/browse/{served.uid}")
        assert page.locator(f'form[action="/admin/highlight/{served.uid}"]').count() == 1
        accessible(page)
    finally:
        context.close()
