"""The Content-Security-Policy in a real browser (issue 11, item 5): every page works under it.

Debian's Chromium loads the public pages, signs in through the form, uses the
live preview (a script fetching JSON) and opens the member and admin pages,
recording every CSP violation the page reports and every console error.  A
page framed by another site is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from browsing import chromium
from harness import add_member, init_node, running
from nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PAGES = (
    "/",
    "/datasets",
    "/browse",
    "/leaderboards",
    "/bounties",
    "/federation",
    "/governance",
    "/terms",
    "/faq",
)
SIGNED_IN = ("/contribute", "/me", "/admin", "/admin/funnel", "/governance")
# Recorded before any of the page's own scripts run (an init script is not subject to the page's CSP).
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile));
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, str]]:
    root = init_node(tmp_path_factory.mktemp("csp") / "node")
    admin = add_member(root, "ada", admin=True)
    with running(root) as process:
        yield process, admin


def _violations(page: Any) -> list[str]:
    found: list[str] = page.evaluate("window.__csp || []")
    return found


def test_every_page_loads_without_a_csp_violation(node: tuple[NodeProcess, str]) -> None:
    process, admin = node
    with chromium() as browser:
        context = browser.new_context()
        try:
            context.add_init_script(WATCH)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            seen: dict[str, list[str]] = {}
            for path in PAGES:
                page.goto(f"{process.url}{path}")
                seen[path] = _violations(page)

            page.goto(f"{process.url}/contribute")
            assert "/login" in page.url
            page.get_by_label("Member token").fill(admin)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/contribute"))
            page.get_by_label("Paste it here").fill(
                "User: mail me at ana.silva@example.org\nAssistant: Done."
            )
            page.locator("#live-preview mark").first.wait_for()  # the script and its fetch ran
            seen["/contribute (live preview)"] = _violations(page)
            for path in SIGNED_IN:
                page.goto(f"{process.url}{path}")
                assert "/login" not in page.url, path
                seen[f"{path} (signed in)"] = _violations(page)
        finally:
            context.close()
    assert {path: v for path, v in seen.items() if v} == {}
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_another_site_cannot_frame_a_page(node: tuple[NodeProcess, str]) -> None:
    process, _ = node
    with chromium() as browser:
        context = browser.new_context()
        try:
            page = context.new_page()
            refused: list[str] = []
            page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
            # A page from "another site" (a data: URL has an opaque origin) framing the sign-in page.
            page.set_content(f'<iframe id="f" src="{process.url}/login"></iframe>')
            for _ in range(50):
                if refused:
                    break
                page.wait_for_timeout(100)
            frame = page.frame_locator("#f")
            assert frame.locator("#token").count() == 0, "the sign-in form must not render in a frame"
        finally:
            context.close()
    assert refused, "Chromium reports the refused frame (frame-ancestors 'none')"
