"""Broker: ephemeral publish/subscribe with queue groups, at most once.

``publish(topic, body, metadata)`` hands a message to every subscription of ``topic`` that
exists at that moment; nothing is stored, so a message published while nobody listens is
gone. Delivery::

    publish("orders.created")
        ├──► every ungrouped subscription          (fan-out: each gets a copy)
        ├──► group "billing":  exactly one member  (round robin, skipping full members)
        └──► group "audit":    exactly one member

A subscription is live when ``subscribe()`` returns: a message published right after it
arrives. Messages from one publisher on one topic arrive in publish order. Each subscription
has a bounded buffer; when a message finds it full, the message is dropped for that
subscription (at most once, never unbounded memory) and :attr:`Subscription.dropped` counts
it. In a queue group a full member is skipped for the next one with room; when every member
is full, the message is dropped and counted on the member whose turn it was.

Topics are 1 to 255 characters of ``A-Z a-z 0-9 _ - .``, made of non-empty ``.``-separated
tokens (``orders.created``); matching is exact (no wildcards). Group names follow the same
rule. Bodies are bytes up to :data:`DEFAULT_MAX_BODY` (configurable per backend); metadata
is at most :data:`MAX_METADATA` string pairs. Bad input is ``bad_request``, an oversized
body ``too_large``.

Backends: :mod:`micro.broker.memory` (in-process) and :mod:`micro.broker.rpc` (the client
of the ``broker`` service that ``micro server`` hosts). Typed subscribers for services are
in :mod:`micro.broker.subscriber`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

from ..errors import bad_request, too_large

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_MAX_BODY",
    "MAX_METADATA",
    "MAX_METADATA_KEY",
    "MAX_METADATA_VALUE",
    "Broker",
    "Message",
    "Subscription",
    "check_body",
    "check_group",
    "check_metadata",
    "check_topic",
]

DEFAULT_MAX_BODY = 1024 * 1024
"""Largest body a backend accepts unless configured otherwise (1 MiB)."""

DEFAULT_BUFFER = 1024
"""Messages a subscription holds unread before it drops new ones."""

MAX_METADATA = 64
"""Most metadata pairs on one message."""

MAX_METADATA_KEY = 255
"""Longest metadata key (characters)."""

MAX_METADATA_VALUE = 4096
"""Longest metadata value (characters)."""

_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_ID = "broker"


class Message(msgspec.Struct, frozen=True):
    """A published message as a subscriber receives it.

    ``id`` is unique per message and assigned by the broker; ``timestamp`` is the broker's
    clock (seconds since the epoch) at publish. One message object may be handed to several
    subscribers: treat it, metadata included, as read-only.
    """

    topic: str
    body: bytes
    metadata: dict[str, str] = {}
    id: str = ""
    timestamp: float = 0.0


@runtime_checkable
class Subscription(Protocol):
    """A live subscription: iterate it for messages, :meth:`close` it when done.

    Iteration ends (``StopAsyncIteration``) once the subscription is closed, by
    :meth:`close` or by its broker going away. Cancelling a pending ``__anext__`` loses no
    message.
    """

    topic: str
    group: str | None

    @property
    def dropped(self) -> int:
        """Messages lost because this subscription's buffer was full."""
        ...

    @property
    def pending(self) -> int:
        """Messages waiting in the buffer, not read yet."""
        ...

    def __aiter__(self) -> AsyncIterator[Message]:
        """The subscription itself."""
        ...

    async def __anext__(self) -> Message:
        """The next message; waits for one."""
        ...

    async def close(self) -> None:
        """Stop delivery, drop unread messages and free the subscription (idempotent)."""
        ...


@runtime_checkable
class Broker(Protocol):
    """What every broker backend provides."""

    async def publish(self, topic: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
        """Deliver ``body`` to the current subscribers of ``topic``; return the message id."""
        ...

    async def subscribe(self, topic: str, group: str | None = None) -> Subscription:
        """Subscribe to ``topic``, alone or as a member of queue ``group``; live on return."""
        ...

    async def close(self) -> None:
        """End every subscription made through this broker and release connections."""
        ...


def _check_name(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise bad_request(_ID, f"{field} must be a string")
    if not 1 <= len(value) <= 255 or _NAME.fullmatch(value) is None:
        raise bad_request(
            _ID,
            f"{field} {value[:300]!r} is invalid: use 1 to 255 characters of A-Z a-z 0-9 _ - "
            "in non-empty tokens separated by '.'",
        )
    return value


def check_topic(topic: object) -> str:
    """``topic`` if it is a valid topic name, else ``bad_request`` naming it."""
    return _check_name(topic, "topic")


def check_group(group: object) -> str | None:
    """``group`` if it is ``None`` or a valid group name, else ``bad_request``."""
    return None if group is None else _check_name(group, "group")


def check_body(body: object, max_body: int) -> bytes:
    """``body`` as bytes if it is bytes of at most ``max_body`` bytes; ``bad_request`` for
    another type, ``too_large`` past the limit."""
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes):
        raise bad_request(_ID, f"body must be bytes, not {type(body).__name__}")
    if len(body) > max_body:
        raise too_large(_ID, f"body of {len(body)} bytes exceeds the limit of {max_body} bytes")
    return body


def check_metadata(metadata: object) -> dict[str, str]:
    """A copy of ``metadata`` (``None`` is empty) if it is at most :data:`MAX_METADATA`
    pairs of non-empty string keys and string values within the length limits."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise bad_request(_ID, "metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_METADATA:
        raise bad_request(_ID, f"metadata has {len(metadata)} entries; the limit is {MAX_METADATA}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise bad_request(_ID, "metadata keys and values must be strings")
        if not 1 <= len(key) <= MAX_METADATA_KEY:
            raise bad_request(
                _ID, f"metadata key {key[:300]!r} must have 1 to {MAX_METADATA_KEY} characters"
            )
        if len(value) > MAX_METADATA_VALUE:
            raise bad_request(
                _ID,
                f"metadata value of {key!r} has {len(value)} characters; "
                f"the limit is {MAX_METADATA_VALUE}",
            )
    return dict(metadata)
