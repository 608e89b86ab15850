"""The ``broker`` RPC service: a thin layer over whichever broker backend runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..context import Context
from . import Broker
from .messages import PublishRequest, PublishResponse, SubscribeEvent, SubscribeRequest

__all__ = ["BrokerHandler"]


class BrokerHandler:
    """Serves ``Broker.Publish`` and ``Broker.Subscribe`` (a server stream).

    ``Subscribe`` subscribes on behalf of the caller and streams what arrives; the
    subscription ends when the stream does (the caller closes it, cancels it, or its
    connection drops).
    """

    def __init__(self, backend: Broker) -> None:
        self._backend = backend

    async def publish(self, ctx: Context, req: PublishRequest) -> PublishResponse:
        """Publish one message."""
        return PublishResponse(await self._backend.publish(req.topic, req.body, req.metadata))

    async def subscribe(self, ctx: Context, req: SubscribeRequest) -> AsyncIterator[SubscribeEvent]:
        """A live subscription: an empty first event, then every message delivered to it."""
        sub = await self._backend.subscribe(req.topic, req.group)
        try:
            yield SubscribeEvent()
            # A drop only happens while the buffer is full, so a message always follows it:
            # the count sent with each message is never stale for long.
            async for message in sub:
                yield SubscribeEvent(message, sub.dropped)
        finally:
            await sub.close()
