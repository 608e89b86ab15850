"""Request and response types of the ``broker`` RPC service."""

from __future__ import annotations

import msgspec

from . import Message

__all__ = ["PublishRequest", "PublishResponse", "SubscribeEvent", "SubscribeRequest"]


class PublishRequest(msgspec.Struct):
    """Publish ``body`` on ``topic`` with ``metadata``."""

    topic: str
    body: bytes
    metadata: dict[str, str] = {}


class PublishResponse(msgspec.Struct):
    """The id the broker gave the message."""

    id: str


class SubscribeRequest(msgspec.Struct):
    """Subscribe to ``topic``, alone or in queue ``group``."""

    topic: str
    group: str | None = None


class SubscribeEvent(msgspec.Struct, omit_defaults=True):
    """One item of the ``Broker.Subscribe`` stream.

    The first event has no ``message``: it says the subscription is live. Every later one
    carries a message and ``dropped``, how many messages the server-side subscription has
    lost so far to a full buffer.
    """

    message: Message | None = None
    dropped: int = 0
