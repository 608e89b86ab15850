"""Streaming calls: ``Client.stream`` returns a :class:`Stream`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import bad_request, not_found, too_large, unavailable
from ..transport.client import ClientConnection
from ..transport.frames import Codec, Frame, Kind
from ..transport.streams import InboundStream
from .budget import inherit, timeout_error

if TYPE_CHECKING:
    from . import Client

__all__ = ["Stream"]

_encoder = msgspec.msgpack.Encoder()


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
        metadata = self._client.authorize(self._metadata)
        wait, metadata = inherit(self._timeout, metadata, self.service, self.endpoint)
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
