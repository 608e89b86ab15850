"""The calling side of the protocol: multiplexed connections and a pool of them."""

from __future__ import annotations

import asyncio
import itertools
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from ..errors import MicroError, bad_request, too_large, unavailable
from ..identity.peer import peer_identity
from .connection import FramedProtocol
from .deadlines import Deadlines
from .frames import DEFAULT_MAX_FRAME, PREFACE, Frame, Kind, encode_parts
from .streams import InboundStream

__all__ = [
    "ClientConnection",
    "ConnectionLost",
    "ConnectionPool",
    "DeadlineExceeded",
    "SSLContextSource",
    "connect",
    "split_address",
]

_REQUEST = int(Kind.REQUEST)
_RESPONSE = int(Kind.RESPONSE)
_ERROR = int(Kind.ERROR)

SSLContextSource = _ssl.SSLContext | Callable[[], _ssl.SSLContext]
"""A TLS context for new connections, or a function giving the current one (rotation)."""


class ConnectionLost(Exception):
    """The connection closed while a call was in flight: it may or may not have executed."""


class DeadlineExceeded(Exception):
    """A call's deadline passed before its answer came (the server was told to cancel)."""


class ClientConnection(FramedProtocol):
    """A connection that carries many concurrent calls, matched to replies by id."""

    def __init__(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_frame)
        self.address = address
        self._ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.streams: dict[int, InboundStream[Any]] = {}
        self.deadlines = Deadlines(self.loop, self._expire)
        self._lost: BaseException | None = None
        self.identity = ""  # the server's SPIFFE id, over mutual TLS
        self._confirm: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._out += PREFACE
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.identity = peer_identity(ssl_object)

    async def confirm(self) -> None:
        """Wait until the server answers a PING on connection id 0.

        Over TLS 1.3 the client's side of the handshake completes before the server has
        checked the client's certificate; a server that refuses it only closes the
        connection. Waiting for one answer makes that refusal a connect error."""
        self._confirm = self.loop.create_future()
        self.send(Frame(Kind.PING, 0))
        await self._confirm

    def next_id(self) -> int:
        """A call id not used before on this connection."""
        return next(self._ids)

    def request(
        self,
        service: str,
        endpoint: str,
        body: bytes,
        codec: int,
        metadata: dict[str, str] | None,
        timeout: float,
    ) -> tuple[int, asyncio.Future[Frame]]:
        """Send a unary REQUEST that the caller waits ``timeout`` seconds for; return its id
        and a future that gets the RESPONSE or ERROR frame, or fails with
        :class:`DeadlineExceeded` or :class:`ConnectionLost`."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        call_id = next(self._ids)
        fut: asyncio.Future[Frame] = self.loop.create_future()
        self.pending[call_id] = fut
        ms = max(1, int(timeout * 1000))
        encode_parts(
            (_REQUEST, call_id, body, codec, None, service, endpoint, metadata, ms), self._out
        )
        self._schedule_flush()
        self.deadlines.add(call_id, self.loop.time() + timeout)
        return call_id, fut

    def _expire(self, call_id: int) -> None:
        fut = self.pending.pop(call_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_exception(DeadlineExceeded())
            if not self.closed:
                self.send(Frame(Kind.CANCEL, call_id))

    def open_stream(self, frame: Frame, stream: InboundStream[Any]) -> None:
        """Send a REQUEST that opens a streaming call; replies go to ``stream``."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.address} is closed")
        self.streams[frame.id] = stream
        self.send(frame)

    def forget(self, call_id: int, cancel: bool = True) -> None:
        """Stop waiting for ``call_id``; tell the server to abandon it when ``cancel``."""
        fut = self.pending.pop(call_id, None)
        stream = self.streams.pop(call_id, None)
        self.deadlines.discard(call_id)
        if cancel and (fut is not None or stream is not None) and not self.closed:
            self.send(Frame(Kind.CANCEL, call_id))

    def frames_received(self, frames: list[Frame]) -> None:
        for frame in frames:
            kind = frame.kind
            if kind == _RESPONSE or kind == _ERROR:
                fut = self.pending.pop(frame.id, None)
                if fut is not None:
                    self.deadlines.discard(frame.id)
                    if not fut.done():
                        fut.set_result(frame)
                    continue
                stream = self.streams.pop(frame.id, None)
                if stream is not None:
                    if kind == Kind.ERROR and frame.error is not None:
                        stream.fail(MicroError.from_wire(frame.error))
                    else:  # a client-streaming call's single response
                        stream.put(frame.body)
                        stream.end()
                elif frame.id == 0 and kind == Kind.ERROR:
                    self._lost = MicroError.from_wire(frame.error) if frame.error else None
            elif kind == Kind.MESSAGE:
                stream = self.streams.get(frame.id)
                if stream is not None:
                    stream.put(frame.body)
                elif frame.id in self.pending:  # a unary call answered by a stream
                    err = bad_request(self.address, "the endpoint streams; open it as a stream")
                    self.pending.pop(frame.id).set_result(
                        Frame(Kind.ERROR, frame.id, error=err.to_wire())
                    )
                    self.send(Frame(Kind.CANCEL, frame.id))
            elif kind == Kind.END:
                stream = self.streams.pop(frame.id, None)
                if stream is not None:
                    stream.end()
            elif kind == Kind.PING:
                self.send(Frame(Kind.PONG, frame.id))
            elif kind == Kind.PONG and frame.id == 0:
                waiter, self._confirm = self._confirm, None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def oversized_frame(self, call_id: int, size: int) -> None:
        err = too_large(
            self.address, f"reply of {size} bytes exceeds the limit of {self.max_frame}"
        )
        fut = self.pending.pop(call_id, None)
        if fut is not None and not fut.done():
            fut.set_result(Frame(Kind.ERROR, call_id, error=err.to_wire()))
        stream = self.streams.pop(call_id, None)
        if stream is not None:
            stream.fail(err)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        reason = self._lost or exc
        lost = ConnectionLost(
            f"connection to {self.address} lost" + (f": {reason}" if reason else "")
        )
        self.deadlines.close()
        waiter, self._confirm = self._confirm, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(lost)
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(lost)
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.fail(unavailable(self.address, str(lost)))


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


async def connect(
    address: str, max_frame: int = DEFAULT_MAX_FRAME, ssl: _ssl.SSLContext | None = None
) -> ClientConnection:
    """Open a connection to a micro RPC server at ``host:port``.

    With ``ssl`` (a client context, see :mod:`micro.identity.tls`) the connection is TLS and
    is returned only once the server has answered a PING, i.e. accepted this client's
    certificate; a refusal raises ``OSError`` saying so."""
    host, port = split_address(address)
    loop = asyncio.get_running_loop()
    if ssl is None:
        _, proto = await loop.create_connection(
            lambda: ClientConnection(address, max_frame), host, port
        )
        return proto
    _, proto = await loop.create_connection(
        lambda: ClientConnection(address, max_frame),
        host,
        port,
        ssl=ssl,
        server_hostname=host,
    )
    try:
        await proto.confirm()
    except ConnectionLost:
        raise OSError(
            f"TLS: {address} closed the connection after the handshake: it refused this "
            "client's certificate (not trusted, revoked, expired or missing)"
        ) from None
    except BaseException:
        proto.abort()
        raise
    return proto


class ConnectionPool:
    """One multiplexed connection per address, opened on first use and replaced when lost."""

    def __init__(
        self,
        max_frame: int = DEFAULT_MAX_FRAME,
        connect_timeout: float = 5.0,
        ssl: SSLContextSource | None = None,
    ) -> None:
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        """TLS for every connection: a client context, or a function returning the current
        one (each new connection calls it, so rotated credentials apply to new ones)."""
        self.conns: dict[str, ClientConnection] = {}
        self._connecting: dict[str, asyncio.Future[ClientConnection]] = {}

    async def get(self, address: str) -> ClientConnection:
        """A live connection to ``address``; raises ``OSError`` when it cannot connect."""
        conn = self.conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        waiting = self._connecting.get(address)
        if waiting is not None:
            return await asyncio.shield(waiting)
        fut: asyncio.Future[ClientConnection] = asyncio.get_running_loop().create_future()
        self._connecting[address] = fut
        tls = self.ssl
        context = tls() if callable(tls) else tls
        try:
            conn = await asyncio.wait_for(
                connect(address, self.max_frame, context), self.connect_timeout
            )
        except (OSError, TimeoutError, ValueError) as exc:
            err = OSError(f"cannot connect to {address}: {exc or type(exc).__name__}")
            fut.set_exception(err)
            fut.exception()  # retrieved here; concurrent waiters re-raise it
            raise err from exc
        except BaseException:
            fut.cancel()
            raise
        finally:
            self._connecting.pop(address, None)
        self.conns[address] = conn
        fut.set_result(conn)
        return conn

    def discard(self, address: str) -> None:
        """Close and forget the connection to ``address``."""
        conn = self.conns.pop(address, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close every connection."""
        conns, self.conns = self.conns, {}
        for conn in conns.values():
            conn.close()
        if conns:
            await asyncio.sleep(0)
