"""Request and response types of the ``events`` RPC service.

``Events.Consume`` is a bidirectional stream. The client's first :class:`ConsumeIn` carries
``open`` (the consume options) and an initial ``credit``; the server answers
``ConsumeOut(ready=True)`` once the member joined its group, then sends batches of events,
never more than the credit the client has given. Later client messages add credit (one per
event the client handed to its caller) and carry ``ack``, ``nack`` and ``release`` (events
that never left the client's buffer: delivered again without counting a delivery). A
message with an ``id`` is answered by a ``ConsumeOut`` with that ``id`` and the ``error`` of
the first settlement that failed, if any; without one, errors are dropped.

The server's member always acks manually: with ``auto_ack`` the client acks each event as
it hands it to its caller, so auto-ack means the same thing in process and over RPC. When
the stream ends or breaks, the member leaves its group and what it held unacked is
delivered again at once.
"""

from __future__ import annotations

import msgspec

from ..errors import WireError
from . import Event, TopicInfo

__all__ = [
    "ConsumeIn",
    "ConsumeOpen",
    "ConsumeOut",
    "Empty",
    "PublishRequest",
    "PurgeResponse",
    "ReadRequest",
    "ReadResponse",
    "RetentionRequest",
    "Settle",
    "TopicsResponse",
]


class Empty(msgspec.Struct):
    """No fields."""


class PublishRequest(msgspec.Struct, omit_defaults=True):
    """Append ``body`` to ``topic``."""

    topic: str
    body: bytes
    metadata: dict[str, str] = {}
    key: str | None = None
    message_id: str | None = None
    deliver_at: float | None = None


class ReadRequest(msgspec.Struct, omit_defaults=True):
    """Stored events of ``topic`` from ``start`` ("first", "new", a sequence or a time)."""

    topic: str
    start: str | int | float = "first"
    limit: int = 100


class ReadResponse(msgspec.Struct):
    """Stored events, oldest first."""

    events: list[Event] = []


class TopicsResponse(msgspec.Struct):
    """Every topic."""

    topics: list[TopicInfo] = []


class RetentionRequest(msgspec.Struct, omit_defaults=True):
    """Set a topic's retention."""

    topic: str
    max_age: float | None = None
    max_events: int | None = None
    max_bytes: int | None = None


class PurgeResponse(msgspec.Struct):
    """How many events retention removed."""

    removed: int = 0


class ConsumeOpen(msgspec.Struct, omit_defaults=True):
    """The options of :meth:`~micro.events.Events.consume`."""

    topic: str
    group: str
    start: str | int | float = "new"
    auto_ack: bool = True
    ack_wait: float = 30.0
    max_deliver: int = 5
    dead_letter_topic: str | None = None
    max_ack_pending: int = 1000


class Settle(msgspec.Struct, omit_defaults=True):
    """Ack or nack delivery ``deliveries`` of event ``sequence``."""

    sequence: int
    deliveries: int
    delay: float = 0.0


class ConsumeIn(msgspec.Struct, omit_defaults=True):
    """A client message of ``Events.Consume``."""

    open: ConsumeOpen | None = None
    credit: int = 0
    id: int = 0
    ack: list[Settle] = []
    nack: list[Settle] = []
    release: list[Settle] = []


class ConsumeOut(msgspec.Struct, omit_defaults=True):
    """A server message of ``Events.Consume``."""

    ready: bool = False
    events: list[Event] = []
    id: int = 0
    error: WireError | None = None
