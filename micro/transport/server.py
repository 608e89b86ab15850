"""The serving side of the protocol: accept connections, dispatch frames to endpoints."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import ssl as _ssl
import time
from collections.abc import Callable
from typing import Any

from ..context import Context, _current
from ..errors import MicroError, bad_request, internal, not_found, timeout, too_large
from ..identity.peer import peer_identity
from ..service.endpoint import Endpoint, StreamKind
from .connection import FramedProtocol
from .deadlines import Deadlines
from .frames import DEFAULT_MAX_FRAME, PREFACE, Frame, Kind, encode_parts
from .streams import InboundStream
from .tasks import start_task

__all__ = ["Router", "RpcServer"]

log = logging.getLogger("micro.server")

_NOT_MICRO = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"This port speaks the micro RPC protocol (docs/protocol.md), not HTTP. "
    b"Use the API gateway for HTTP.\r\n"
)


class Router:
    """Endpoints by service name and endpoint name; one listener can serve many services.

    ``fallback(service, endpoint)`` (optional) answers calls no table entry matches: it
    returns the :class:`Endpoint` to run (built for that name, e.g. a forwarder in
    :mod:`micro.proxy`) or ``None`` for the usual ``not_found``."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Endpoint]] = {}
        self.fallback: Callable[[str, str], Endpoint | None] | None = None

    def add(self, service: str, endpoints: list[Endpoint]) -> None:
        """Serve ``endpoints`` under ``service``."""
        table = self.services.setdefault(service, {})
        for ep in endpoints:
            table[ep.name] = ep

    def remove(self, service: str) -> None:
        """Stop serving ``service``."""
        self.services.pop(service, None)


class _Call:
    """Bookkeeping for a call in progress."""

    __slots__ = ("inbound", "task", "timed_out")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.inbound: InboundStream[Any] | None = None
        self.timed_out = False


_REQUEST = int(Kind.REQUEST)  # plain ints: comparing with IntEnum members costs more
_RESPONSE = int(Kind.RESPONSE)
_UNARY = StreamKind.UNARY


def _error_frame(call_id: int, err: MicroError) -> Frame:
    return Frame(Kind.ERROR, call_id, error=err.to_wire())


def _cancelled_error(call: _Call, ep: Endpoint) -> MicroError:
    """Why a handler the caller still waits for was cancelled: its deadline passed, the
    server is stopping, or the handler raised CancelledError itself."""
    if call.timed_out:
        return timeout(ep.name, "deadline exceeded")
    return internal(ep.name, "the handler was cancelled before it answered")


class ServerConnection(FramedProtocol):
    """One accepted connection."""

    def __init__(self, server: RpcServer) -> None:
        super().__init__(server.max_frame)
        self.server = server
        self.calls: dict[int, _Call] = {}
        self.deadlines = Deadlines(self.loop, self._expire)
        self._preface = b""
        self._peer = ""
        self._identity = ""  # the client's SPIFFE id, over mutual TLS
        self._pressure = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Over TLS this runs once the handshake is done: the peer's chain is verified.
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._identity = peer_identity(ssl_object)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if len(self._preface) < len(PREFACE):
            need = len(PREFACE) - len(self._preface)
            self._preface += data[:need]
            data = data[need:]
            if not PREFACE.startswith(self._preface):
                log.warning("closing connection from %s: not the micro protocol", self._peer)
                if self.transport is not None:
                    self.transport.write(_NOT_MICRO)
                self.close()
                return
            if not data:
                return
        super().data_received(data)

    # -- frames --------------------------------------------------------------------------------

    def frames_received(self, frames: list[Frame]) -> None:
        for frame in frames:
            kind = frame.kind
            if kind == _REQUEST:
                self._request(frame)
            elif kind == Kind.MESSAGE:
                call = self.calls.get(frame.id)
                if call is not None and call.inbound is not None:
                    call.inbound.put(frame.body)
            elif kind == Kind.END:
                call = self.calls.get(frame.id)
                if call is not None and call.inbound is not None:
                    call.inbound.end()
            elif kind == Kind.CANCEL:
                self._cancel(frame.id)
            elif kind == Kind.PING:
                self.send(Frame(Kind.PONG, frame.id))
            elif kind == Kind.PONG:
                pass
            else:
                self.send(
                    _error_frame(frame.id, bad_request("micro", f"unexpected frame kind {kind}"))
                )

    def oversized_frame(self, call_id: int, size: int) -> None:
        detail = f"frame of {size} bytes exceeds the limit of {self.max_frame} bytes"
        self._cancel(call_id)  # the ERROR ends the call: stop its handler, send nothing more
        self.send(_error_frame(call_id, too_large("micro", detail)))

    def _request(self, frame: Frame) -> None:
        server = self.server
        call_id = frame.id
        if call_id in self.calls:
            self.send(_error_frame(call_id, bad_request("micro", f"call id {call_id} in use")))
            return
        if server.draining:
            err = MicroError(frame.service, "draining", "service is shutting down", 503)
            self.send(_error_frame(call_id, err))
            return
        router = server.router
        table = router.services.get(frame.service)
        ep = table.get(frame.endpoint) if table is not None else None
        if ep is None and router.fallback is not None:
            ep = router.fallback(frame.service, frame.endpoint)
        if ep is None:
            if table is None:
                detail = f"service {frame.service!r} is not served here"
            else:
                detail = f"service {frame.service!r} has no endpoint {frame.endpoint!r}"
            self.send(_error_frame(call_id, not_found(frame.service, detail)))
            return
        server.calls_total += 1
        codec = frame.codec
        kind = ep.kind
        request: Any = None
        if kind is _UNARY or kind is StreamKind.SERVER:
            try:
                request = ep.decode_request(frame.body, codec)
            except MicroError as err:
                server.errors_total += 1
                self.send(_error_frame(call_id, err))
                return
        timeout_ms = frame.timeout
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None
        metadata = frame.metadata
        ctx = Context(
            metadata if metadata is not None else {}, deadline, frame.service, ep.name, self._peer
        )
        if self._identity:
            ctx.identity = self._identity
        call = self.calls[call_id] = _Call()
        if kind is _UNARY:
            coro = self._run_unary(call_id, call, ep, ctx, codec, request)
        else:
            if kind is not StreamKind.SERVER:
                request = call.inbound = InboundStream(
                    functools.partial(ep.decode_request, codec=codec), self._set_pressure
                )
            coro = self._run_stream(call_id, call, ep, ctx, codec, request)
        # A context of the call's own: context variables that the handler sets must not leak
        # into the next call read from this connection.
        context = contextvars.copy_context()
        context.run(_current.set, ctx)
        task = start_task(self.loop, coro, context)
        if not task.done():
            call.task = task
            if timeout_ms > 0:
                self.deadlines.add(call_id, self.loop.time() + timeout_ms / 1000)

    def _expire(self, call_id: int) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.task is not None:
            call.timed_out = True
            call.task.cancel()

    def _finish(self, call_id: int, call: _Call) -> None:
        if self.calls.get(call_id) is call:
            del self.calls[call_id]
            self.deadlines.discard(call_id)
        if call.inbound is not None:
            call.inbound.release()

    async def _run_unary(
        self, call_id: int, call: _Call, ep: Endpoint, ctx: Context, codec: int, request: Any
    ) -> None:
        try:
            value = await ep.call(ctx, request)
        except asyncio.CancelledError:
            if self.calls.get(call_id) is call:  # else the caller cancelled or left
                self._fail(call_id, ep, _cancelled_error(call, ep))
        except Exception as exc:
            self._fail(call_id, ep, exc)
        else:
            self._reply(call_id, ep, codec, value)
        finally:
            self._finish(call_id, call)

    def _reply(self, call_id: int, ep: Endpoint, codec: int, value: Any) -> None:
        try:
            body = ep.encode_response(value, codec)
        except MicroError as err:
            self._fail(call_id, ep, err)
            return
        if len(body) > self.max_frame - 64:
            detail = f"response of {len(body)} bytes exceeds the frame limit of {self.max_frame}"
            self._fail(call_id, ep, too_large(ep.name, detail))
            return
        if self.closed:
            return
        parts = (_RESPONSE, call_id, body, codec) if codec else (_RESPONSE, call_id, body)
        encode_parts(parts, self._out)
        self._schedule_flush()

    def _fail(self, call_id: int, ep: Endpoint, exc: BaseException) -> None:
        self.server.errors_total += 1
        if isinstance(exc, MicroError):
            err = exc
        else:
            log.error("%s failed", ep.name, exc_info=exc)
            err = internal(ep.name, f"{type(exc).__name__}: {exc}")
        self.send(_error_frame(call_id, err))

    # -- streaming calls -----------------------------------------------------------------------

    async def _run_stream(
        self, call_id: int, call: _Call, ep: Endpoint, ctx: Context, codec: int, request: Any
    ) -> None:
        try:
            result = await ep.call(ctx, request)
            if ep.kind is StreamKind.CLIENT:
                self._reply(call_id, ep, codec, result)
                return
            try:
                async for item in result:
                    body = ep.encode_response(item, codec)
                    if len(body) > self.max_frame - 64:
                        raise too_large(
                            ep.name,
                            f"stream message of {len(body)} bytes exceeds the frame "
                            f"limit of {self.max_frame}",
                        )
                    self.send(Frame(Kind.MESSAGE, call_id, body, codec))
                    await self.drain()
            finally:
                await result.aclose()
            self.send(Frame(Kind.END, call_id))
        except asyncio.CancelledError:
            if self.calls.get(call_id) is call:  # else the caller cancelled or left
                self._fail(call_id, ep, _cancelled_error(call, ep))
        except ConnectionResetError:
            return
        except Exception as exc:
            self._fail(call_id, ep, exc)
        finally:
            self._finish(call_id, call)

    def _set_pressure(self, on: bool) -> None:
        self._pressure += 1 if on else -1
        if self.transport is None or self.closed:
            return
        if on and self._pressure == 1:
            self.transport.pause_reading()
        elif not on and self._pressure == 0:
            self.transport.resume_reading()

    def _cancel(self, call_id: int) -> None:
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        self.deadlines.discard(call_id)
        if call.inbound is not None:
            call.inbound.release()
        if call.task is not None:
            call.task.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.connections.discard(self)
        for call_id in list(self.calls):
            self._cancel(call_id)
        self.deadlines.close()

    def running(self) -> list[asyncio.Task[Any]]:
        """Tasks of the calls still running on this connection."""
        return [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]


class RpcServer:
    """A listening socket that serves the endpoints of a :class:`Router`."""

    def __init__(self, router: Router, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.router = router
        self.max_frame = max_frame
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self.calls_total = 0
        self.errors_total = 0
        self._server: asyncio.Server | None = None
        self.address = ""
        self.tls = False

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl: _ssl.SSLContext | None = None
    ) -> str:
        """Listen on ``host:port`` (0 picks a free port); return the ``host:port`` bound.

        With ``ssl`` (a server context that requires client certificates, see
        :mod:`micro.identity.tls`) every connection is TLS, and each call's
        ``ctx.identity`` is the client certificate's SPIFFE id."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ServerConnection(self), host, port, reuse_address=True, ssl=ssl
        )
        self.tls = ssl is not None
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{sock_host}:{sock_port}"
        return self.address

    async def drain(self, grace: float = 10.0) -> None:
        """Refuse new calls, wait up to ``grace`` seconds for in-flight ones, then cancel."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        pending = {t for conn in self.connections for t in conn.running()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        for conn in list(self.connections):
            conn.flush()

    async def stop(self, grace: float = 10.0) -> None:
        """Drain, then close every connection."""
        await self.drain(grace)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
