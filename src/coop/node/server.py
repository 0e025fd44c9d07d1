"""Running the HTTP app in this process: granian (embedded) or uvicorn.

One process per node: the single SQLite writer and the pipeline lock live in
it, which is what makes group commit work (two processes writing one SQLite
file fight over its lock).
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import signal
from pathlib import Path

from coop.node.http.app import create_app
from coop.node.runtime import Node

__all__ = ["ServerKind", "serve"]

log = logging.getLogger("coop.server")


class ServerKind(enum.StrEnum):
    GRANIAN = "granian"
    UVICORN = "uvicorn"


def serve(root: Path, *, host: str, port: int, kind: ServerKind = ServerKind.GRANIAN) -> None:
    node = Node(root)
    app = create_app(node)
    # Everything built so far lives as long as the server: keep it out of every collection,
    # and collect the young generation less often (full collections are what stretch p99).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    log.info(
        "node %s (%s) serving on http://%s:%d",
        node.config.node.name,
        node.identity.fingerprint,
        host,
        port,
    )
    try:
        if kind is ServerKind.GRANIAN:
            _granian(app, host, port)
        else:
            _uvicorn(app, host, port)
    finally:
        node.close()


def _uvicorn(app: object, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


def _granian(app: object, host: str, port: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(app, address=host, port=port, interface=Interfaces.ASGI, log_enabled=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    asyncio.run(main())
