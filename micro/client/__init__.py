"""The RPC client: find a node, call it, decode the answer.

``client.call(service, endpoint, request)`` picks a node of ``service`` from a cached,
watch-updated registry view (round robin or random), sends the request over a pooled,
multiplexed connection and returns the decoded response. A node that refuses connections is
skipped for the next one; a call whose connection broke after it was sent is retried only
when its endpoint is marked idempotent, since it may already have run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar, overload

import msgspec

from ..context import current_context
from ..errors import MicroError, WireError, bad_request, not_found, timeout, too_large, unavailable
from ..registry import Node, Registry
from ..transport.client import ClientConnection, ConnectionLost, ConnectionPool, DeadlineExceeded
from ..transport.frames import DEFAULT_MAX_FRAME, Codec, Frame, Kind
from ..transport.streams import InboundStream
from .selector import Selector, selector_named
from .view import RegistryView

__all__ = ["Client", "Stream"]

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_generic_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
_DEFAULT_TIMEOUT = 10.0
_ERROR = int(Kind.ERROR)
_NO_ERROR = WireError(detail="error frame without an error")


class Client:
    """Calls services by name. Build it with the registry to resolve names in (or none, to
    call fixed addresses only)."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        selector: str | Selector = "round_robin",
        timeout: float = _DEFAULT_TIMEOUT,
        max_frame: int = DEFAULT_MAX_FRAME,
        pool: ConnectionPool | None = None,
    ) -> None:
        self.view = RegistryView(registry) if registry is not None else None
        self.select: Selector = selector_named(selector) if isinstance(selector, str) else selector
        self.timeout = timeout
        self.pool = pool or ConnectionPool(max_frame)
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    # -- unary -----------------------------------------------------------------------------

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = ...,
        *,
        response_type: type[T],
        timeout: float | None = ...,
        metadata: dict[str, str] | None = ...,
        address: str | None = ...,
    ) -> T: ...

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = ...,
        *,
        response_type: None = ...,
        timeout: float | None = ...,
        metadata: dict[str, str] | None = ...,
        address: str | None = ...,
    ) -> Any: ...

    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        timeout: float | None = None,
        metadata: dict[str, str] | None = None,
        address: str | None = None,
    ) -> Any:
        """Call ``service``'s ``endpoint`` (``"Handler.Method"``) with ``request`` (a Struct,
        dataclass or dict) and return the response, decoded into ``response_type`` when given
        (else plain dicts and lists). Raises :class:`~micro.errors.MicroError`."""
        body = _encoder.encode(request if request is not None else {})
        reply = await self.call_raw(
            service, endpoint, body, timeout=timeout, metadata=metadata, address=address
        )
        return self._decode(reply, response_type, service, endpoint)

    def _decode(self, body: bytes, response_type: Any, service: str, endpoint: str) -> Any:
        if response_type is None:
            return _generic_decoder.decode(body)
        decoder = self._decoders.get(response_type)
        if decoder is None:
            decoder = self._decoders[response_type] = msgspec.msgpack.Decoder(response_type)
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise bad_request(
                service, f"response of {endpoint} does not fit {response_type}: {exc}"
            ) from None

    async def call_raw(
        self,
        service: str,
        endpoint: str,
        body: bytes,
        *,
        codec: int = Codec.MSGPACK,
        timeout: float | None = None,
        metadata: dict[str, str] | None = None,
        address: str | None = None,
    ) -> bytes:
        """Like :meth:`call` with an already encoded body; returns the encoded response (in
        the same ``codec``: the gateway passes JSON straight through)."""
        wait, metadata = self._budget(timeout, metadata, service, endpoint)
        if len(body) > self.pool.max_frame - 1024:
            raise too_large(service, f"request of {len(body)} bytes exceeds the frame limit")
        conn = self._ready(service) if address is None else None
        if not isinstance(conn, ClientConnection):  # not resolved or connected yet, or fixed
            return await self._call_slow(
                service, endpoint, body, codec, wait, metadata, address, first=conn
            )
        call_id, fut = conn.request(service, endpoint, body, codec, metadata, wait)
        try:
            frame = await fut
        except ConnectionLost as exc:
            self._check_retry(service, endpoint, exc)
            return await self._call_slow(
                service, endpoint, body, codec, wait, metadata, None, [conn.address]
            )
        except DeadlineExceeded:
            raise timeout_error(service, endpoint) from None
        except asyncio.CancelledError:
            conn.forget(call_id)
            raise
        if frame.kind == _ERROR:
            err = MicroError.from_wire(frame.error or _NO_ERROR)
            if err.code == "draining":  # refused before it ran: safe on another node
                return await self._call_slow(
                    service, endpoint, body, codec, wait, metadata, None, [conn.address]
                )
            raise err
        return frame.body

    def _ready(self, service: str) -> ClientConnection | str | None:
        """Without waiting: a live pooled connection to the node selected from the cached
        view; else that node's address (not connected yet); else ``None`` (not cached)."""
        view = self.view
        if view is None:
            return None
        nodes = view.nodes(service)
        if not nodes:
            return None
        address = self.select(service, nodes).address
        conn = self.pool.conns.get(address)
        return conn if conn is not None and not conn.closed else address

    def _check_retry(self, service: str, endpoint: str, exc: ConnectionLost) -> None:
        """Raise unless a call whose connection broke may be sent again."""
        if not self._idempotent(service, endpoint):
            raise unavailable(
                service,
                f"{exc}; {endpoint} may have run, so it is not retried "
                "(mark it idempotent to allow retries)",
            ) from None

    async def _call_slow(
        self,
        service: str,
        endpoint: str,
        body: bytes,
        codec: int,
        wait: float,
        metadata: dict[str, str] | None,
        address: str | None,
        tried: list[str] | None = None,
        first: str | None = None,
    ) -> bytes:
        """Resolve, connect and call, moving on to another node after a refused connection,
        a ``draining`` answer, or (for idempotent endpoints) a lost connection. ``address``
        is a fixed node (no retries); ``first`` a node already selected for the first try."""
        tried = tried if tried is not None else []
        while True:
            node_address = address or first or await self._pick(service, tried)
            first = None
            try:
                conn = await self.pool.get(node_address)
            except OSError as exc:
                if address is not None:
                    raise unavailable(service, str(exc)) from None
                tried.append(node_address)
                if self.view is not None:
                    self.view.evict(service, node_address)
                continue
            call_id, fut = conn.request(service, endpoint, body, codec, metadata, wait)
            try:
                frame = await fut
            except ConnectionLost as exc:
                if address is not None:
                    raise unavailable(service, str(exc)) from None
                self._check_retry(service, endpoint, exc)
                tried.append(node_address)
                continue
            except DeadlineExceeded:
                raise timeout_error(service, endpoint) from None
            except asyncio.CancelledError:
                conn.forget(call_id)
                raise
            if frame.kind != _ERROR:
                return frame.body
            err = MicroError.from_wire(frame.error or _NO_ERROR)
            if err.code != "draining" or address is not None:
                raise err
            tried.append(node_address)

    def _budget(
        self, timeout: float | None, metadata: dict[str, str] | None, service: str, endpoint: str
    ) -> tuple[float, dict[str, str] | None]:
        """The time a unary call may take (``timeout``, else the client's default) and the
        metadata it carries, bounded and extended by the call being handled (if any)."""
        wait, metadata = inherit(
            self.timeout if timeout is None else timeout, metadata, service, endpoint
        )
        assert wait is not None
        return wait, metadata

    async def _pick(self, service: str, tried: list[str]) -> str:
        view = self.view
        if view is None:
            raise unavailable(service, "this client has no registry; pass address=")
        nodes: list[Node] | None = view.nodes(service)
        if not nodes and not tried:
            nodes = await view.load(service)
        if tried:
            nodes = [n for n in nodes or () if n.address not in tried]
        if not nodes:
            detail = f"no live node of {service!r}"
            if tried:
                detail += f" (could not reach {', '.join(tried)})"
            raise unavailable(service, detail)
        return self.select(service, nodes).address

    def _idempotent(self, service: str, endpoint: str) -> bool:
        info = self.view.endpoint(service, endpoint) if self.view is not None else None
        return info is not None and info.metadata.get("idempotent") == "true"

    # -- streaming -------------------------------------------------------------------------

    def stream(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        timeout: float | None = None,
        metadata: dict[str, str] | None = None,
        address: str | None = None,
    ) -> Stream:
        """Open a streaming call. For server-streaming endpoints pass ``request``; for client
        and bidirectional ones leave it out and :meth:`Stream.send` messages. Iterate the
        stream for responses. ``timeout`` (default: none) bounds the whole stream."""
        return Stream(self, service, endpoint, request, response_type, timeout, metadata, address)

    async def close(self) -> None:
        """Close connections and stop watching the registry."""
        if self.view is not None:
            await self.view.close()
        await self.pool.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def inherit(
    wait: float | None, metadata: dict[str, str] | None, service: str, endpoint: str
) -> tuple[float | None, dict[str, str] | None]:
    """Bound ``wait`` (seconds, or ``None`` for no deadline) by the deadline of the call
    being handled, if any, and add its metadata under ours: what propagates across hops."""
    ctx = current_context()
    if ctx is not None:
        if ctx.deadline is not None:
            left = ctx.deadline - time.monotonic()
            if left <= 0:
                raise timeout_error(service, endpoint)
            wait = left if wait is None else min(wait, left)
        if ctx.metadata:
            metadata = {**ctx.metadata, **metadata} if metadata else ctx.metadata
    return wait, metadata


def timeout_error(service: str, endpoint: str) -> MicroError:
    """The error of a call whose deadline passed."""
    return timeout(service, f"{endpoint} did not answer before the deadline")


class Stream:
    """A streaming call in progress: ``send`` messages, iterate responses, ``close``."""

    def __init__(
        self,
        client: Client,
        service: str,
        endpoint: str,
        request: Any,
        response_type: Any,
        timeout: float | None,
        metadata: dict[str, str] | None,
        address: str | None,
    ) -> None:
        self._client = client
        self.service = service
        self.endpoint = endpoint
        self._request = request
        self._response_type = response_type
        self._timeout = timeout
        self._metadata = metadata
        self._address = address
        self._conn: ClientConnection | None = None
        self._id = 0
        self._inbound: InboundStream[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._send_closed = False
        self._finished = False

    async def open(self) -> None:
        """Open the call (done on first use when not called)."""
        if self._conn is not None:
            return
        client = self._client
        wait, metadata = inherit(self._timeout, self._metadata, self.service, self.endpoint)
        address = self._address or await client._pick(self.service, [])
        try:
            conn = await client.pool.get(address)
        except OSError as exc:
            raise unavailable(self.service, str(exc)) from None
        self._id = conn.next_id()
        self._inbound = InboundStream(self._decode)
        body = _encoder.encode(self._request) if self._request is not None else b""
        ms = 0 if wait is None else max(1, int(wait * 1000))
        conn.open_stream(
            Frame(
                Kind.REQUEST,
                self._id,
                body,
                Codec.MSGPACK,
                None,
                self.service,
                self.endpoint,
                metadata,
                ms,
            ),
            self._inbound,
        )
        self._conn = conn
        if wait is not None:
            self._timer = conn.loop.call_later(wait, self._expire)

    def _decode(self, body: bytes) -> Any:
        return self._client._decode(body, self._response_type, self.service, self.endpoint)

    def _expire(self) -> None:
        if self._inbound is not None and not self._finished:
            self._inbound.fail(timeout_error(self.service, self.endpoint))
            self._abandon()

    async def send(self, message: Any) -> None:
        """Send one message (client and bidirectional streams)."""
        await self.open()
        if self._send_closed:
            raise bad_request(self.service, "send after close_send")
        assert self._conn is not None
        body = _encoder.encode(message)
        if len(body) > self._conn.max_frame - 1024:
            raise too_large(self.service, f"message of {len(body)} bytes exceeds the frame limit")
        self._conn.send(Frame(Kind.MESSAGE, self._id, body))
        try:
            await self._conn.drain()
        except ConnectionResetError:
            raise unavailable(self.service, "connection lost") from None

    async def close_send(self) -> None:
        """Say no more messages will be sent."""
        await self.open()
        if not self._send_closed and self._conn is not None:
            self._send_closed = True
            self._conn.send(Frame(Kind.END, self._id))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        await self.open()
        assert self._inbound is not None
        try:
            async for item in self._inbound:
                yield item
            self._finished = True
        finally:
            if not self._finished:
                self._abandon()
            self._stop_timer()

    async def receive(self) -> Any:
        """The next response; raises ``StopAsyncIteration`` at the end."""
        await self.open()
        assert self._inbound is not None
        try:
            return await self._inbound.receive()
        except StopAsyncIteration:
            self._finished = True
            self._stop_timer()
            raise

    async def response(self) -> Any:
        """For client-streaming calls: close the sending side and wait for the one answer."""
        await self.close_send()
        try:
            return await self.receive()
        except StopAsyncIteration:
            raise not_found(self.service, f"{self.endpoint} ended without a response") from None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _abandon(self) -> None:
        if self._conn is not None and not self._finished:
            self._finished = True
            self._conn.forget(self._id)

    async def close(self) -> None:
        """Abandon the call if it is still running."""
        self._abandon()
        self._stop_timer()

    async def __aenter__(self) -> Stream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
