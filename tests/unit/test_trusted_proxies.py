"""The client, scheme and host a trusted proxy names (issue 11, item 2): a table of named cases."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from coop.node.http.clientaddr import resolve_scope

TRUSTED = frozenset({"10.0.0.2", "10.0.0.3"})


class Case(NamedTuple):
    name: str
    peer: str
    headers: list[tuple[str, str]]
    client: str
    scheme: str
    host: str


CASES = [
    Case("untrusted peer: headers ignored", "192.0.2.1",
         [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "a.example")],
         "192.0.2.1", "http", "node:8000"),
    Case("trusted proxy: all three", "10.0.0.2",
         [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "coop.example")],
         "203.0.113.7", "https", "coop.example"),
    Case("right-most untrusted hop is the client", "10.0.0.2",
         [("x-forwarded-for", "198.51.100.9, 203.0.113.7, 10.0.0.3")], "203.0.113.7", "http", "node:8000"),
    Case("repeated headers are one list", "10.0.0.2",
         [("x-forwarded-for", "198.51.100.9"), ("x-forwarded-for", "203.0.113.7")], "203.0.113.7", "http", "node:8000"),
    Case("malformed hop: the proxy itself", "10.0.0.2",
         [("x-forwarded-for", "203.0.113.7, not-an-ip")], "10.0.0.2", "http", "node:8000"),
    Case("the nearest proxy's scheme wins", "10.0.0.2",
         [("x-forwarded-proto", "http, https")], "10.0.0.2", "https", "node:8000"),
    Case("an odd scheme is ignored", "10.0.0.2",
         [("x-forwarded-proto", "javascript")], "10.0.0.2", "http", "node:8000"),
    Case("a host that is not a host is ignored", "10.0.0.2",
         [("x-forwarded-host", "evil.example/path")], "10.0.0.2", "http", "node:8000"),
    Case("IPv6 host with a port", "10.0.0.2",
         [("x-forwarded-host", "[2001:db8::1]:8443")], "10.0.0.2", "http", "[2001:db8::1]:8443"),
    Case("RFC 7239 Forwarded", "10.0.0.2",
         [("forwarded", 'for=198.51.100.9, for="[2001:db8::7]:4711";proto=https;host=coop.example')],
         "2001:db8::7", "https", "coop.example"),
    Case("Forwarded for with a port", "10.0.0.2",
         [("forwarded", "for=203.0.113.7:1234;proto=https")], "203.0.113.7", "https", "node:8000"),
    Case("Forwarded obfuscated: the proxy", "10.0.0.2",
         [("forwarded", "for=_hidden")], "10.0.0.2", "http", "node:8000"),
    Case("X-Forwarded-For first, Forwarded unread", "10.0.0.2",
         [("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=198.51.100.1;proto=https")],
         "203.0.113.7", "http", "node:8000"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_request_resolves_to_the_client_the_trusted_proxy_names(case: Case) -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "client": (case.peer, 5555),
        "headers": [(b"host", b"node:8000")] + [(k.encode(), v.encode()) for k, v in case.headers],
    }
    resolve_scope(scope, TRUSTED)  # type: ignore[arg-type]
    assert scope["client"][0] == case.client
    assert scope["scheme"] == case.scheme
    hosts = [v.decode() for k, v in scope["headers"] if k == b"host"]
    assert hosts == [case.host]


def test_without_trusted_proxies_nothing_is_read() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "client": ("127.0.0.1", 5555),
        "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
    }
    resolve_scope(scope, frozenset())  # type: ignore[arg-type]
    assert scope["client"] == ("127.0.0.1", 5555) and scope["scheme"] == "http"
