"""A protocol-level liveness probe: PING a micro RPC server, wait for the PONG.

Every micro server answers PING frames (``docs/protocol.md``) without an endpoint, so the
probe needs nothing from the service. It reuses the transport's client connection (preface,
framing, coalesced writes) through a small subclass that also resolves PONG frames; the
transport itself is unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from ssl import SSLContext

from ..transport.client import ClientConnection, split_address
from ..transport.frames import Frame, Kind

__all__ = ["probe"]


class _ProbeConnection(ClientConnection):
    """A client connection that also matches PONG frames to waiting PINGs."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.pongs: dict[int, asyncio.Future[None]] = {}

    def ping(self) -> asyncio.Future[None]:
        """Send a PING; the future completes when its PONG arrives."""
        ping_id = self.next_id()
        fut: asyncio.Future[None] = self.loop.create_future()
        self.pongs[ping_id] = fut
        self.send(Frame(Kind.PING, ping_id))
        return fut

    def frames_received(self, frames: list[Frame]) -> None:
        rest: list[Frame] = []
        for frame in frames:
            if frame.kind == Kind.PONG:
                fut = self.pongs.pop(frame.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            else:
                rest.append(frame)
        if rest:
            super().frames_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        pongs, self.pongs = self.pongs, {}
        for fut in pongs.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError(f"connection to {self.address} lost"))


async def probe(
    address: str, timeout: float = 1.0, ssl: Callable[[], SSLContext] | None = None
) -> float:
    """Round-trip seconds of a PING to the micro server at ``address`` (connecting
    included). Raises ``OSError`` when the node cannot be reached or closes the connection,
    ``TimeoutError`` when no PONG comes within ``timeout`` seconds, ``ValueError`` for an
    address that is not ``host:port``."""
    host, port = split_address(address)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    conn: _ProbeConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            if ssl is None:
                _, conn = await loop.create_connection(
                    lambda: _ProbeConnection(address), host, port
                )
            else:  # a node that serves mutual TLS (MICRO_TLS=1)
                _, conn = await loop.create_connection(
                    lambda: _ProbeConnection(address), host, port, ssl=ssl(), server_hostname=host
                )
            await conn.ping()
        return time.perf_counter() - start
    finally:
        if conn is not None:
            conn.abort()
