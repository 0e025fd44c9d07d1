"""Login CSRF (issue 11, item 1): only this node's own sign-in page can sign a browser in.

Another site (a sandboxed frame sends ``Origin: null``; an old browser or a
stripped header sends none) must not sign a victim in as the attacker, whose
account would then receive what the victim shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from coop.node.http.app import create_app
from coop.node.web.sessions import COOKIE, LOGIN_COOKIE

from factories import make_member, make_node

BASE = "http://testserver.local"
HTML = {"Accept": "text/html"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient[Any], str]]:
    node = make_node(tmp_path)
    _, token = make_member(node, "robin")
    with TestClient(create_app(node, background=False), base_url=BASE) as client:
        yield client, token
    node.close()


def login_form(client: TestClient[Any]) -> str:
    """Open the sign-in page as a browser does; returns the form's token (the cookie is in the jar)."""
    page = client.get("/login", headers=HTML)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert found, "the sign-in form carries a token"
    return found.group(1)


def sign_in(client: TestClient[Any], data: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    return client.post("/login", data=data, headers={**HTML, **headers}, follow_redirects=False)


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("a sandboxed frame", {"Origin": "null"}),
        ("no Origin and no Referer", {}),
        ("another site", {"Origin": "https://evil.example"}),
        ("another site's Referer", {"Referer": "https://evil.example/page"}),
        ("another port", {"Origin": "http://testserver.local:8080"}),
    ],
)
def test_login_from_anywhere_but_this_node_signs_nobody_in(
    site: tuple[TestClient[Any], str], name: str, headers: dict[str, str]
) -> None:
    client, token = site
    form = login_form(client)  # even with the right double-submit token
    response = sign_in(client, {"token": token, "next": "/me", "login_csrf": form}, headers)
    assert response.status_code == 403, f"{name}: {response.status_code}"
    assert COOKIE not in response.headers.get("set-cookie", ""), name


def test_login_without_the_sign_in_pages_token_signs_nobody_in(site: tuple[TestClient[Any], str]) -> None:
    client, token = site
    origin = {"Origin": BASE}
    assert sign_in(client, {"token": token, "next": "/me"}, origin).status_code == 403, "no token"
    form = login_form(client)
    forged = sign_in(client, {"token": token, "login_csrf": form[::-1]}, origin)
    assert forged.status_code == 403, "a token that is not the cookie's"
    assert sign_in(client, {"token": token, "login_csrf": "é" * 32}, origin).status_code == 403
    client.cookies.delete(LOGIN_COOKIE)
    stale = sign_in(client, {"token": token, "login_csrf": form}, origin)
    assert stale.status_code == 403, "the form's token without the cookie it came with"
    assert "open the sign-in page again" in stale.text


def test_login_from_the_sign_in_page_signs_in(site: tuple[TestClient[Any], str]) -> None:
    client, token = site
    form = login_form(client)
    assert login_form(client) == form, "the browser keeps its token while the cookie lasts"
    wrong = sign_in(client, {"token": "coop_nope", "login_csrf": form}, {"Origin": BASE})
    assert wrong.status_code == 401
    assert f'name="login_csrf" value="{form}"' in wrong.text, "the retry form still carries the token"
    by_origin = sign_in(client, {"token": token, "next": "/me", "login_csrf": form}, {"Origin": BASE})
    assert by_origin.status_code == 303, by_origin.text
    assert by_origin.headers["location"] == "/me?done=signed-in"
    assert f"{COOKIE}=" in by_origin.headers["set-cookie"]
    by_referer = sign_in(client, {"token": token, "login_csrf": form}, {"Referer": f"{BASE}/login"})
    assert by_referer.status_code == 303, "an old browser without Origin: its same-origin Referer"


def test_a_form_from_a_sandboxed_frame_is_refused_even_when_signed_in(
    site: tuple[TestClient[Any], str],
) -> None:
    client, token = site
    form = login_form(client)
    assert sign_in(client, {"token": token, "login_csrf": form}, {"Origin": BASE}).status_code == 303
    page = client.get("/governance", headers=HTML)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    sent = client.post(
        "/logout", data={"csrf": csrf.group(1)}, headers={**HTML, "Origin": "null"}, follow_redirects=False
    )
    assert sent.status_code == 403
    odd = client.post(
        "/contribute/preview",
        content=b'{"text": "x"}',
        headers={b"X-CSRF-Token": "\u00e9t\u00e9".encode("latin-1"), b"Content-Type": b"application/json"},
    )
    assert odd.status_code == 403, "a CSRF token with non-ASCII characters is refused, not a 500"


def test_with_an_https_public_url_the_cookies_are_secure_even_without_a_trusted_proxy(tmp_path: Path) -> None:
    import msgspec

    from coop.node.config import Config, NodeSection

    node = make_node(tmp_path)
    _, token = make_member(node, "robin")
    public = "https://coop.example.test"
    node.config = msgspec.structs.replace(
        node.config, node=msgspec.structs.replace(node.config.node, public_url=public)
    )
    assert isinstance(node.config, Config) and isinstance(node.config.node, NodeSection)
    try:
        # A proxy the node does not trust: the request looks like plain http to the node.
        with TestClient(create_app(node, background=False), base_url=BASE) as client:
            page = client.get("/login", headers=HTML)
            assert "secure" in page.headers["set-cookie"].lower()
            form = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert form is not None
            client.cookies.set(LOGIN_COOKIE, page.cookies[LOGIN_COOKIE])
            signed = sign_in(client, {"token": token, "login_csrf": form.group(1)}, {"Origin": public})
    finally:
        node.close()
    assert signed.status_code == 303, signed.text
    session = next(h for h in signed.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}="))
    assert "secure" in session.lower()
