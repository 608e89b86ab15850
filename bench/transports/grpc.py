"""grpcio's asyncio API: a generic handler echoing bytes, called over a ``grpc.aio`` channel."""

from __future__ import annotations

from typing import Any

import grpc

from . import MESSAGE, Stop, no_broker

__all__ = ["NAME", "broker", "connect", "serve"]

NAME = "grpc"
broker = no_broker

_METHOD = "/bench.Echo/Call"
_PAYLOAD = MESSAGE.encode()


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def serve(arg: str) -> tuple[str, Stop]:
    """Start a ``grpc.aio`` server with one generic unary-unary method."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def stop() -> None:
        await server.stop(None)

    return f"127.0.0.1:{port}", stop


class GrpcEcho:
    """Unary-unary calls on one channel (HTTP/2 multiplexes the calls in flight)."""

    expected = _PAYLOAD

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.method = channel.unary_unary(_METHOD)

    async def call(self) -> bytes:
        """One echo."""
        reply: bytes = await self.method(_PAYLOAD)
        return reply

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


async def connect(address: str, inflight: int) -> GrpcEcho:
    """A channel to ``address``, connected before the first timed call."""
    channel = grpc.aio.insecure_channel(address)
    await channel.channel_ready()
    return GrpcEcho(channel)
