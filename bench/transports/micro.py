"""The framework itself: a ``Service`` with a typed handler, called with ``Client.call``."""

from __future__ import annotations

import msgspec

from micro import Client, Context, Service
from micro.registry import Node, ServiceInfo
from micro.registry.memory import MemoryRegistry

from . import MESSAGE, Stop, no_broker

__all__ = ["NAME", "EchoRequest", "EchoResponse", "broker", "connect", "serve"]

NAME = "micro"
broker = no_broker


class EchoRequest(msgspec.Struct):
    """What the client sends."""

    message: str


class EchoResponse(msgspec.Struct):
    """What the service answers."""

    message: str


class Echo:
    """The handler: ``Echo.Call``."""

    async def call(self, ctx: Context, req: EchoRequest) -> EchoResponse:
        """Answer with the request's message."""
        return EchoResponse(req.message)


async def serve(arg: str) -> tuple[str, Stop]:
    """Start the ``echo`` service on a free port of 127.0.0.1."""
    service = Service("echo", registry=MemoryRegistry(), address="127.0.0.1:0")
    service.handler(Echo)
    await service.start()
    return service.address, service.stop


class MicroEcho:
    """Calls ``echo`` by name, resolved through a registry that holds the server's node."""

    expected = MESSAGE

    def __init__(self, client: Client) -> None:
        self.client = client
        self.request = EchoRequest(MESSAGE)

    async def call(self) -> str:
        """One typed echo."""
        response = await self.client.call(
            "echo", "Echo.Call", self.request, response_type=EchoResponse
        )
        return response.message

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()


async def connect(address: str, inflight: int) -> MicroEcho:
    """A client whose registry lists the server child as the one node of ``echo``."""
    registry = MemoryRegistry()
    await registry.register(ServiceInfo("echo", nodes=[Node("bench-server", address)]), ttl=None)
    return MicroEcho(Client(registry))
