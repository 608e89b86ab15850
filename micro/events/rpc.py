"""Events as a client of the ``events`` service hosted by ``micro server``."""

from __future__ import annotations

from ..client import Client
from . import Ack, Event, Retention, Start, TopicInfo
from ._options import ConsumeOptions, check_name, check_retention, check_start
from ._rpc_consumer import RpcConsumer
from .messages import (
    Empty,
    PublishRequest,
    PurgeResponse,
    ReadRequest,
    ReadResponse,
    RetentionRequest,
    TopicsResponse,
)

__all__ = ["RpcEvents"]

SERVICE = "events"


class RpcEvents:
    """Talks to the events service at ``address`` (``host:port`` of ``micro server``).

    ``timeout`` bounds each unary call and each ack; ``prefetch`` is how many events a
    consumer's stream may carry ahead of its caller (more: faster; fewer: fairer sharing
    between the members of a group).
    """

    def __init__(
        self,
        address: str,
        client: Client | None = None,
        timeout: float = 10.0,
        prefetch: int = 64,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout
        self._prefetch = prefetch
        self._consumers: set[RpcConsumer] = set()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        key: str | None = None,
        message_id: str | None = None,
        deliver_at: float | None = None,
    ) -> Ack:
        """Append an event; return once the server has it durable."""
        request = PublishRequest(topic, body, metadata or {}, key, message_id, deliver_at)
        return await self._client.call(
            SERVICE,
            "Events.Publish",
            request,
            address=self.address,
            timeout=self._timeout,
            response_type=Ack,
        )

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        start: Start = "new",
        auto_ack: bool = True,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        dead_letter_topic: str | None = None,
        max_ack_pending: int = 1000,
    ) -> RpcConsumer:
        """Join ``group`` of ``topic`` through a stream to the server."""
        options = ConsumeOptions(
            topic,
            group,
            start,
            auto_ack,
            ack_wait,
            max_deliver,
            dead_letter_topic or "",
            max_ack_pending,
        )
        consumer = RpcConsumer(
            self._client,
            SERVICE,
            self.address,
            options,
            self._prefetch,
            self._timeout,
            self._consumers.discard,
        )
        await consumer.open()
        self._consumers.add(consumer)
        return consumer

    async def read(self, topic: str, *, start: Start = "first", limit: int = 100) -> list[Event]:
        """Up to ``limit`` stored events from ``start`` on."""
        check_name(topic, "topic")
        check_start(start)
        resp = await self._client.call(
            SERVICE,
            "Events.Read",
            ReadRequest(topic, start, limit),
            address=self.address,
            timeout=self._timeout,
            response_type=ReadResponse,
        )
        return resp.events

    async def topics(self) -> list[TopicInfo]:
        """Every topic."""
        resp = await self._client.call(
            SERVICE,
            "Events.Topics",
            Empty(),
            address=self.address,
            timeout=self._timeout,
            response_type=TopicsResponse,
        )
        return resp.topics

    async def retention(
        self,
        topic: str,
        *,
        max_age: float | None = None,
        max_events: int | None = None,
        max_bytes: int | None = None,
    ) -> TopicInfo:
        """Set ``topic``'s retention."""
        check_retention(Retention(max_age, max_events, max_bytes))
        resp = await self._client.call(
            SERVICE,
            "Events.Retention",
            RetentionRequest(topic, max_age, max_events, max_bytes),
            address=self.address,
            timeout=self._timeout,
            response_type=TopicsResponse,
        )
        return resp.topics[0]

    async def purge(self) -> int:
        """Apply retention on the server now."""
        resp = await self._client.call(
            SERVICE,
            "Events.Purge",
            Empty(),
            address=self.address,
            timeout=self._timeout,
            response_type=PurgeResponse,
        )
        return resp.removed

    async def close(self) -> None:
        """Close open consumers and the connection to the server."""
        for consumer in list(self._consumers):
            await consumer.close()
        self._consumers.clear()
        if self._owns_client:
            await self._client.close()
