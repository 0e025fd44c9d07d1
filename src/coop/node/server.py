"""Running the HTTP app in this process: granian (embedded) or uvicorn.

One process per node: the single SQLite writer and the pipeline lock live in
it, which is what makes group commit work (two processes writing one SQLite
file fight over its lock).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from coop.node.errors import BusyError, InputError
from coop.node.http.app import create_app
from coop.node.runtime import Node
from coop.node.storage.datadir import SERVE_LOCK, DataDir

__all__ = ["ServerKind", "check_address", "serve"]

log = logging.getLogger("coop.server")


class ServerKind(enum.StrEnum):
    GRANIAN = "granian"
    UVICORN = "uvicorn"


def serve(
    root: Path,
    *,
    host: str,
    port: int,
    kind: ServerKind = ServerKind.GRANIAN,
    access_log: bool = False,
    starting: Callable[[], None] | None = None,
) -> None:
    """Serve the node until stopped; refuses at once (BusyError) when another server holds the
    data directory or the address.  ``starting`` runs once both are ours (the CLI's warnings)."""
    data = DataDir.open(root)
    # For the server's life; the kernel drops it when the process dies, even by kill -9.
    with data.lock(SERVE_LOCK, purpose=f"coop serve on {root}"):
        check_address(host, port)
        if starting is not None:
            starting()
        _serve(root, host=host, port=port, kind=kind, access_log=access_log)


def check_address(host: str, port: int) -> None:
    """Refuse an address another server listens on, before starting ours.

    granian opens its listener with SO_REUSEPORT, and the kernel lets a second such listener
    share the port: two co-ops would answer requests in turn.  A trial bind without
    SO_REUSEPORT fails when anything listens there (SO_REUSEADDR only lets a previous run's
    closed connections be).  uvicorn binds without SO_REUSEPORT, so it refuses a taken
    address by itself too; this check makes both say so in one line.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc}", field="host") from None
    failures: list[OSError] = []
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                trial.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                trial.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise BusyError(
                        f"cannot listen on {host}:{port}: the address is already in use"
                        " (another server, perhaps another co-op, listens there)"
                    ) from None
                failures.append(exc)
    if failures and len(failures) == len(addresses):
        raise InputError(f"cannot listen on {host}:{port}: {failures[0].strerror}", field="host")


def _serve(root: Path, *, host: str, port: int, kind: ServerKind, access_log: bool) -> None:
    node = Node(root)
    app = create_app(node, access=access_log)
    # Everything built so far lives as long as the server: keep it out of every collection,
    # and collect the young generation less often (full collections are what stretch p99).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    if node.config.node.public_url.lower().startswith("https://") and not node.config.node.trusted_proxies:
        log.warning(
            "public_url is https but node.trusted_proxies is empty: the proxy's X-Forwarded-* headers"
            " are ignored, so every client shares the proxy's address (one rate limit for all, the"
            " proxy's address in the security log); set trusted_proxies to the proxy's address"
        )
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
        # Client address, scheme and host from a proxy: only node.trusted_proxies, in the app
        # (coop.node.http.clientaddr), the same for both servers; uvicorn's own default trusts
        # X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
        log_config=None,  # its loggers go through the node's escaping formatter
        timeout_graceful_shutdown=5,
        # Peers keep one connection between gossip rounds (the client's idle expiry is 25 s,
        # granian's 30 s); uvicorn's 5 s default would close it at every default interval.
        timeout_keep_alive=30,
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
