"""A fake Bluesky PDS on 127.0.0.1: it fakes the network edge of the Bluesky channel.

It speaks the few XRPC methods the channel's ``atproto`` client calls -- createSession (the
login), createRecord (a post), deleteRecord (a post deleted) and getProfile (answered, though the
channel does not ask for it) -- over real HTTP, so the real client library, its models and its
error mapping run unchanged.  It keeps the posts it holds and every request it saw.

createRecord honours a client's ``rkey`` (a TID for app.bsky.feed.post, else 400
InvalidRequest).  A key already taken is answered as the reference PDS answers it: the MST
insert throws and the PDS replies 500 InternalServerError (bluesky-social/indigo#873 reports
exactly this for a duplicate rkey); getRecord answers 400 RecordNotFound for a missing key.
``lose_reply_at=N`` stores the Nth createRecord and then answers 503, and so every call after
it while ``down`` stays set (a post out, its reply lost, the PDS gone); ``redirect_to`` answers createSession with 307 to that URL.
``undeletable`` holds post URIs deleteRecord refuses (400 InvalidRequest, the post stays);
``retry_after`` makes createRecord answer 429 RateLimitExceeded with that Retry-After header.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DID = "did:plc:fakecoopaccount0000000000"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")


def _jwt(scope: str) -> str:
    """An unsigned JWT the client can read (it only looks at ``exp`` to refresh early)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    # exp far in the future: the client never refreshes during a test.
    return (
        f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'scope': scope, 'sub': DID, 'exp': 4102444800})}.c2ln"
    )


@dataclass
class FakePds:
    handle: str
    password: str
    url: str = ""
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)  # at:// uri -> record
    deleted: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # the XRPC method of every request, in order
    lose_reply_at: int | None = None  # the Nth createRecord is stored, then the PDS goes down
    down: bool = False  # every call answered 503
    redirect_to: str | None = None  # createSession answers 307 to this URL
    passwords: list[str] = field(default_factory=list)  # every password createSession received
    undeletable: set[str] = field(default_factory=set)  # deleteRecord answers 400 for these URIs
    retry_after: str | None = None  # createRecord answers 429 with this Retry-After header
    _created: int = 0
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def texts(self) -> list[str]:
        return [str(record["text"]) for record in self.posts.values()]

    def answer(self, method: str, body: dict[str, Any], auth: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls.append(method)
            if self.down:
                return 503, {"error": "ServiceUnavailable", "message": "down"}
            if method == "com.atproto.server.createSession":
                self.passwords.append(str(body.get("password")))
                if self.redirect_to is not None:
                    return 307, {"location": self.redirect_to + "/xrpc/" + method}
                if body.get("identifier") != self.handle or body.get("password") != self.password:
                    return 401, {
                        "error": "AuthenticationRequired",
                        "message": "Invalid identifier or password",
                    }
                return 200, {
                    "accessJwt": _jwt("com.atproto.access"),
                    "refreshJwt": _jwt("com.atproto.refresh"),
                    "handle": self.handle,
                    "did": DID,
                    "active": True,
                }
            if not auth.startswith("Bearer "):
                return 401, {"error": "AuthenticationRequired", "message": "no session"}
            if method == "app.bsky.actor.getProfile":
                return 200, {"did": DID, "handle": self.handle}
            if method == "com.atproto.repo.createRecord":
                if self.retry_after is not None:
                    return 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
                if body.get("repo") != DID or body.get("collection") != "app.bsky.feed.post":
                    return 400, {"error": "InvalidRequest", "message": "wrong repo or collection"}
                rkey = body.get("rkey")
                if rkey is None:
                    self._next += 1
                    rkey = f"3fake{self._next:08d}"
                elif not TID.fullmatch(str(rkey)):
                    return 400, {"error": "InvalidRequest", "message": f"Invalid record key: {rkey}"}
                uri = f"at://{DID}/app.bsky.feed.post/{rkey}"
                if uri in self.posts:
                    return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
                self.posts[uri] = body["record"]
                self._created += 1
                if self._created == self.lose_reply_at:
                    self.down = True
                    return 503, {"error": "ServiceUnavailable", "message": "down"}
                return 200, {"uri": uri, "cid": CID}
            if method == "com.atproto.repo.getRecord":
                uri = f"at://{body.get('repo')}/{body.get('collection')}/{body.get('rkey')}"
                if uri not in self.posts:
                    return 400, {"error": "RecordNotFound", "message": f"Could not locate record: {uri}"}
                return 200, {"uri": uri, "cid": CID, "value": self.posts[uri]}
            if method == "com.atproto.repo.deleteRecord":
                uri = f"at://{body.get('repo')}/{body.get('collection')}/{body.get('rkey')}"
                if uri in self.undeletable:
                    return 400, {"error": "InvalidRequest", "message": "Could not delete record"}
                self.posts.pop(uri, None)  # deleting what is gone succeeds, as on a real PDS
                self.deleted.append(uri)
                return 200, {}
            return 501, {"error": "MethodNotImplemented", "message": method}


@contextmanager
def fake_pds(handle: str, password: str) -> Iterator[FakePds]:
    """A :class:`FakePds` serving on 127.0.0.1 (a free port) for the ``with`` block."""
    pds = FakePds(handle=handle, password=password)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            method = parts.path.removeprefix("/xrpc/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else dict(parse_qsl(parts.query))
            status, answer = pds.answer(method, body, self.headers.get("Authorization") or "")
            data = json.dumps(answer).encode()
            self.send_response(status)
            if 300 <= status <= 399:
                self.send_header("Location", str(answer["location"]))
            if status == 429 and pds.retry_after is not None:
                self.send_header("Retry-After", pds.retry_after)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pds.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield pds
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
