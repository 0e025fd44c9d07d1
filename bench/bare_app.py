"""The baseline for ``bench_ingest.py``: a bare litestar endpoint that stores nothing.

``POST /api/v1/contributions`` reads the body, decodes it with one prebuilt
msgspec decoder into a Struct equivalent to the node's request (the chat
decoded in full, as the node's intake parser does) and answers 201 with a
small JSON.  No auth, rate limit, validation or database: whatever the node
costs beyond this is what durable ingest costs.

    .venv/bin/python bench/bare_app.py --server uvicorn --port 8765

It is run by the same server kind, configured as ``coop serve`` configures it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from litestar import Litestar, Request, Response, get, post


class BareMessage(msgspec.Struct, frozen=True):
    role: str
    content: str
    model: str | None = None


class BareChat(msgspec.Struct, frozen=True):
    messages: list[BareMessage]
    model: str | None = None
    tags: list[str] | None = None


class BareContribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The fields of ``coop.node.contributions.submission.ContributionRequest``, content decoded."""

    label: str
    content: BareChat
    consent: bool = False
    format: str | None = None
    chat_id: str | None = None
    license: str | None = None
    ai_use: str | None = None
    eval: str | None = None
    scope: str | None = None
    attribution: str | None = None
    terms_version: str | None = None
    note: str | None = None
    correction: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    language: str | None = None
    source: str = "natural"
    prompt_shown: bool = False
    channel: str = "api"


_DECODER: Final = msgspec.json.Decoder(BareContribution)
_ENCODER: Final = msgspec.json.Encoder()


@post("/api/v1/contributions", status_code=201)
async def contribute(request: Request[Any, Any, Any]) -> Response[bytes]:
    data = _DECODER.decode(await request.body())
    return Response(
        _ENCODER.encode({"uid": "bare", "state": "waiting_room", "messages": len(data.content.messages)}),
        status_code=201,
        media_type="application/json",
    )


@get("/healthz", sync_to_thread=False)
def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_app() -> Litestar:
    return Litestar(route_handlers=[contribute, healthz], logging_config=None, openapi_config=None)


def _uvicorn(app: Litestar, host: str, port: int) -> None:
    import uvicorn

    # The same settings as coop.node.server._uvicorn.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


def _granian(app: Litestar, host: str, port: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    # The same settings as coop.node.server._granian.
    server = Server(app, address=host, port=port, interface=Interfaces.ASGI, log_enabled=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    app = create_app()
    if args.server == "granian":
        _granian(app, args.host, args.port)
    else:
        _uvicorn(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
