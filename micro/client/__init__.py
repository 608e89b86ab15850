"""The RPC client: find a node, call it, decode the answer.

``client.call(service, endpoint, request)`` picks a node of ``service`` from a cached,
watch-updated registry view (round robin or random), sends the request over a pooled,
multiplexed connection and returns the decoded response. A node that refuses connections is
skipped for the next one; a call whose connection broke after it was sent is retried only
when its endpoint is marked idempotent, since it may already have run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

from ..errors import MicroError, WireError, bad_request, too_large, unavailable
from ..registry import Node, Registry
from ..transport.client import ClientConnection, ConnectionLost, ConnectionPool, DeadlineExceeded
from ..transport.frames import DEFAULT_MAX_FRAME, Codec, Kind
from .budget import inherit, timeout_error
from .selector import Selector, selector_named
from .stream import Stream
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
        credentials: Callable[[], str | None] | None = None,
    ) -> None:
        self.credentials = credentials  # the authorization value of this client's calls
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
        metadata = self.authorize(metadata)
        wait, metadata = inherit(
            self.timeout if timeout is None else timeout, metadata, service, endpoint
        )
        assert wait is not None
        return wait, metadata

    def authorize(self, metadata: dict[str, str] | None) -> dict[str, str] | None:
        """``metadata`` with this client's credentials, unless it carries its own: a service
        calls as itself, not with the token of the call it is handling."""
        if self.credentials is None or (metadata is not None and "authorization" in metadata):
            return metadata
        header = self.credentials()
        if header is None:
            return metadata
        return {**metadata, "authorization": header} if metadata else {"authorization": header}

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
