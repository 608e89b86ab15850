"""The ceiling: framed msgpack on a plain ``asyncio.Protocol``, no framework.

A frame is a 4-byte big-endian length then msgspec msgpack ``[id, body]``. The server
answers every frame of one ``data_received`` with a single ``transport.write``; the client
pipelines calls on one connection, matched to replies through a dict of futures, and
writes what the calls of one loop turn queued in one go.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec

from . import MESSAGE, Stop, no_broker

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "bare"
broker = no_broker

_HEADER = 4
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[int, str])


def _append_frame(out: bytearray, call_id: int, body: str) -> None:
    start = len(out)
    out += b"\x00\x00\x00\x00"
    _encoder.encode_into((call_id, body), out, start + _HEADER)
    out[start : start + _HEADER] = (len(out) - start - _HEADER).to_bytes(_HEADER, "big")


def _split(buf: bytearray) -> list[tuple[int, str]]:
    """Remove the complete frames at the head of ``buf`` and return them decoded."""
    frames: list[tuple[int, str]] = []
    pos, end = 0, len(buf)
    with memoryview(buf) as view:
        while end - pos >= _HEADER:
            size = int.from_bytes(view[pos : pos + _HEADER], "big")
            if end - pos - _HEADER < size:
                break
            frames.append(_decoder.decode(view[pos + _HEADER : pos + _HEADER + size]))
            pos += _HEADER + size
    del buf[:pos]
    return frames


class _ServerProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = bytearray()
        for call_id, body in _split(self.buf):
            _append_frame(out, call_id, body)
        if out and self.transport is not None:
            self.transport.write(out)


async def serve(arg: str) -> tuple[str, Stop]:
    """Listen on a free port of 127.0.0.1."""
    server = await asyncio.get_running_loop().create_server(_ServerProtocol, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return f"{host}:{port}", stop


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out = bytearray()
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[str]] = {}
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, body: str) -> asyncio.Future[str]:
        call_id = next(self.ids)
        fut: asyncio.Future[str] = self.loop.create_future()
        self.pending[call_id] = fut
        _append_frame(self.out, call_id, body)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None:
            self.transport.write(self.out)
            self.out = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pending = self.pending
        for call_id, body in _split(self.buf):
            fut = pending.pop(call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        lost = ConnectionResetError(f"connection lost: {exc}")
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(lost)
        self.pending.clear()


class BareEcho:
    """Pipelined calls on one connection."""

    expected = MESSAGE

    def __init__(self, protocol: _ClientProtocol) -> None:
        self.protocol = protocol

    async def call(self) -> Any:
        """One echo."""
        return await self.protocol.request(MESSAGE)

    async def close(self) -> None:
        """Close the connection."""
        if self.protocol.transport is not None:
            self.protocol.transport.close()


async def connect(address: str, inflight: int) -> BareEcho:
    """One connection to ``address``."""
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_ClientProtocol, host, int(port))
    return BareEcho(protocol)
