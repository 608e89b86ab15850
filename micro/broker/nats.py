"""The broker on NATS core (nats-py): one NATS connection per :class:`NatsBroker`.

Each topic is the NATS subject ``f"{prefix}.{topic}"`` (topic names are valid subject
tokens, and wildcards are refused, so matching stays exact). A message travels as one NATS
message whose payload is a msgpack envelope ``[id, timestamp, metadata, body]``, so
metadata keys are not limited to what NATS headers allow; payloads that are not such an
envelope (published by something else on the subject) are ignored. Queue groups are NATS
queue subscriptions: the server hands each message to one member, chosen at random rather
than round robin, and does not know the client-side buffers, so a message that finds its
member's buffer full is dropped and counted there (no skipping to a member with room).

:meth:`NatsBroker.subscribe` returns after a PING/PONG round trip, so the server has the
subscription and a message published right after it is delivered. The connection opens on
first use. nats-py reconnects by itself when the server goes away and re-creates the
subscriptions; while it is disconnected publishes are buffered by the client (up to its
pending limit) and messages sent meanwhile are lost, which is the at-most-once contract.
A connection that nats-py gave up on is replaced by a new one on the next call; a failed
connect is ``unavailable``.

The largest body is ``max_body``, but the envelope also has to fit the server's
``max_payload`` (1 MiB by default): a message over it is ``too_large``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.errors import Error as NatsError

from ..errors import too_large, unavailable
from . import (
    DEFAULT_BUFFER,
    DEFAULT_MAX_BODY,
    Message,
    check_body,
    check_group,
    check_metadata,
    check_topic,
)

__all__ = ["NatsBroker", "NatsBrokerSettings", "NatsSubscription"]

_log = logging.getLogger(__name__)
_ID = "broker"


@dataclass(frozen=True)
class NatsBrokerSettings:
    """Validated settings of a :class:`NatsBroker`."""

    servers: tuple[str, ...]
    buffer: int = DEFAULT_BUFFER
    max_body: int = DEFAULT_MAX_BODY
    prefix: str = "micro.broker"
    name: str = "micro-broker"
    connect_timeout: float = 2.0
    options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.servers or not all(isinstance(s, str) and s for s in self.servers):
            raise ValueError("servers must be a non-empty list of NATS URLs")
        if self.buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {self.buffer}")
        if self.max_body < 0:
            raise ValueError(f"max_body must not be negative, got {self.max_body}")
        check_topic(self.prefix)  # the same token rules; raises bad_request
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")


class _Envelope(msgspec.Struct, array_like=True, frozen=True):
    id: str
    timestamp: float
    metadata: dict[str, str]
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Envelope)


class NatsSubscription:
    """A NATS subscription feeding a bounded buffer; full means dropped and counted."""

    __slots__ = (
        "_broker",
        "_closed",
        "_dropped",
        "_items",
        "_sub",
        "_waiter",
        "buffer",
        "group",
        "topic",
    )

    def __init__(self, broker: NatsBroker, topic: str, group: str | None, buffer: int) -> None:
        self._broker = broker
        self.topic = topic
        self.group = group
        self.buffer = buffer
        self._items: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0
        self._sub: NatsSub | None = None

    @property
    def dropped(self) -> int:
        """Messages lost because the buffer was full."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Messages waiting in the buffer."""
        return len(self._items)

    async def _on_message(self, msg: Msg) -> None:
        if self._closed:
            return
        try:
            env = _decoder.decode(msg.data)
        except msgspec.DecodeError:
            _log.warning("ignoring a non-micro message on %s", msg.subject)
            return
        if len(self._items) >= self.buffer:
            self._dropped += 1
            return
        self._items.append(Message(self.topic, env.body, env.metadata, env.id, env.timestamp))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> NatsSubscription:
        return self

    async def __anext__(self) -> Message:
        # The item is taken only after the last await, so a cancelled wait loses nothing.
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def _end(self) -> None:
        self._closed = True
        self._items.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        """Unsubscribe and drop unread messages (idempotent)."""
        if self._closed:
            return
        self._end()
        self._broker._subs.discard(self)
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except NatsError:
                pass  # the connection is gone, and the subscription with it

    def __repr__(self) -> str:
        return (
            f"NatsSubscription(topic={self.topic!r}, group={self.group!r}, "
            f"pending={len(self._items)}, dropped={self._dropped}, closed={self._closed})"
        )


class NatsBroker:
    """A :class:`~micro.broker.Broker` on NATS core.

    ``servers`` are NATS URLs (``nats://127.0.0.1:4222``); ``buffer`` is how many unread
    messages each subscription holds before it drops new ones; ``max_body`` the largest
    body accepted; ``prefix`` the subject prefix of every topic; ``name`` the NATS
    connection name (visible in the server's ``/connz``); ``clock`` stamps messages.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        buffer: int = DEFAULT_BUFFER,
        max_body: int = DEFAULT_MAX_BODY,
        prefix: str = "micro.broker",
        name: str = "micro-broker",
        connect_timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        self.settings = NatsBrokerSettings(
            tuple(servers), buffer, max_body, prefix, name, connect_timeout
        )
        self._clock = clock
        self._nc: NatsClient | None = None
        self._lock = asyncio.Lock()
        self._subs: set[NatsSubscription] = set()
        self._prefix = os.urandom(6).hex()
        self._sequence = itertools.count(1)
        self._closed = False

    @property
    def buffer(self) -> int:
        """Messages each subscription buffers."""
        return self.settings.buffer

    @property
    def max_body(self) -> int:
        """The largest body accepted, in bytes."""
        return self.settings.max_body

    def subject(self, topic: str) -> str:
        """The NATS subject of ``topic``."""
        return f"{self.settings.prefix}.{topic}"

    async def _client(self) -> NatsClient:
        if self._closed:
            raise unavailable(_ID, "the broker is closed")
        nc = self._nc
        if nc is not None and not nc.is_closed:
            return nc
        async with self._lock:
            if self._closed:
                raise unavailable(_ID, "the broker is closed")
            if self._nc is not None and not self._nc.is_closed:
                return self._nc
            for sub in list(self._subs):  # their connection was given up: they are over
                sub._end()
            self._subs.clear()
            s = self.settings
            self._nc = NatsClient()
            options: dict[str, Any] = {  # floats work; the stubs say int
                "servers": list(s.servers),
                "name": s.name,
                "connect_timeout": s.connect_timeout,
                "max_reconnect_attempts": -1,  # once connected, reconnect for ever
                "reconnect_time_wait": 0.2,
                "drain_timeout": s.connect_timeout,
                "error_cb": _log_error,
            }
            try:  # the first connect is bounded: an unreachable server is unavailable
                await asyncio.wait_for(self._nc.connect(**options), s.connect_timeout * 2)
            except (NatsError, OSError, TimeoutError) as exc:
                await _discard(self._nc)
                self._nc = None
                raise unavailable(
                    _ID, f"cannot connect to NATS at {list(s.servers)}: {exc}"
                ) from exc
            return self._nc

    async def publish(self, topic: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
        """Send to the current subscribers of ``topic``; return the message id."""
        check_topic(topic)
        body = check_body(body, self.settings.max_body)
        meta = check_metadata(metadata)
        nc = await self._client()
        message_id = f"{self._prefix}-{next(self._sequence)}"
        payload = _encoder.encode(_Envelope(message_id, self._clock(), meta, body))
        if nc.max_payload and len(payload) > nc.max_payload:
            raise too_large(
                _ID,
                f"message of {len(payload)} bytes with metadata exceeds the NATS server's "
                f"max_payload of {nc.max_payload} bytes",
            )
        try:
            await nc.publish(self.subject(topic), payload)
        except NatsError as exc:
            raise unavailable(_ID, f"NATS publish failed: {exc}") from exc
        return message_id

    async def subscribe(self, topic: str, group: str | None = None) -> NatsSubscription:
        """A live subscription to ``topic`` (a NATS queue subscription when ``group``)."""
        check_topic(topic)
        check_group(group)
        nc = await self._client()
        sub = NatsSubscription(self, topic, group, self.settings.buffer)
        try:
            sub._sub = await nc.subscribe(
                self.subject(topic), queue=group or "", cb=sub._on_message
            )
            self._subs.add(sub)
            await nc.flush(timeout=math.ceil(self.settings.connect_timeout))
        except (NatsError, TimeoutError) as exc:
            await sub.close()
            raise unavailable(_ID, f"NATS subscribe failed: {exc}") from exc
        return sub

    def subscriber_count(self) -> int:
        """Live subscriptions made through this broker."""
        return len(self._subs)

    async def close(self) -> None:
        """End every subscription and close the connection; later calls are
        ``unavailable``."""
        self._closed = True
        subs, self._subs = list(self._subs), set()
        for sub in subs:
            sub._end()
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (NatsError, TimeoutError):
                await nc.close()


async def _log_error(exc: Exception) -> None:
    _log.warning("NATS: %s", exc)


async def _discard(nc: NatsClient | None) -> None:
    """Close a client whose first connect failed (stops its connect attempts)."""
    if nc is not None:
        try:
            await nc.close()
        except (NatsError, OSError, TimeoutError):
            _log.debug("closing a failed NATS client", exc_info=True)
