"""A counting TCP relay on 127.0.0.1: what travels between real node processes, measured.

Each :class:`Relay` listens on a port of its own and forwards every connection to one
target port, counting the connections it accepted and the bytes each way.  It also
reads the HTTP/1.1 messages going by (header block, then ``Content-Length`` body), so a
test can tell header bytes from payload bytes.  All relays of a :class:`RelayHub` share
one event loop in a daemon thread; ``close`` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field

__all__ = ["HttpTally", "Relay", "RelayHub"]


@dataclass
class HttpTally:
    """HTTP/1.1 messages seen one way on a relay: counts and bytes, split headers/payload."""

    messages: int = 0
    header_bytes: int = 0
    body_bytes: int = 0
    bodies: list[int] = field(default_factory=list)  # each message's payload size, in order
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _body_left: int = 0
    _lost: bool = False  # a chunked or unreadable message: the rest is not parsed

    def feed(self, data: bytes) -> None:
        if self._lost:
            return
        view = memoryview(data)
        while view:
            if self._body_left:
                take = min(self._body_left, len(view))
                self._body_left -= take
                view = view[take:]
                continue
            self._buffer += view
            view = memoryview(b"")
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[: end + 4])
            rest = bytes(self._buffer[end + 4 :])
            self._buffer.clear()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
                elif name == b"transfer-encoding":
                    self._lost = True
            self.messages += 1
            self.header_bytes += len(head)
            self.body_bytes += length
            self.bodies.append(length)
            if self._lost:
                return
            self._body_left = length
            view = memoryview(rest)


@dataclass
class Relay:
    """One listening port forwarding to ``target``; what went through it so far."""

    port: int
    target: int
    connections: int = 0  # accepted since the last reset
    open: int = 0  # open right now
    up_bytes: int = 0  # client -> target
    down_bytes: int = 0  # target -> client
    up: HttpTally = field(default_factory=HttpTally)  # requests
    down: HttpTally = field(default_factory=HttpTally)  # responses
    client_ports: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget what was counted (open connections keep being relayed and counted)."""
        self.connections = 0
        self.up_bytes = self.down_bytes = 0
        self.client_ports = set()
        self.up = HttpTally()
        self.down = HttpTally()


class RelayHub:
    """Relays on one event loop in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay-hub", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, target: int) -> Relay:
        """A new relay on a free port of 127.0.0.1, forwarding to ``target`` on 127.0.0.1."""
        return asyncio.run_coroutine_threadsafe(self._add(target), self._loop).result(timeout=10)

    async def _add(self, target: int) -> Relay:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        relay = Relay(port=sock.getsockname()[1], target=target)

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._serve(relay, reader, writer)
            finally:
                self._tasks.discard(task)

        server = await asyncio.start_server(accepted, sock=sock)
        self._servers.append(server)
        return relay

    async def _serve(self, relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay.connections += 1
        peer = writer.get_extra_info("peername")
        if peer:
            relay.client_ports.add(int(peer[1]))
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", relay.target)
        except OSError:
            writer.close()
            return
        relay.open += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            try:
                while data := await src.read(65536):
                    if upward:
                        relay.up_bytes += len(data)
                        relay.up.feed(data)
                    else:
                        relay.down_bytes += len(data)
                        relay.down.feed(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    if dst.can_write_eof():
                        dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            relay.open -= 1
            for w in (writer, up_writer):
                w.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
