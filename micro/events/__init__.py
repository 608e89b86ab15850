"""Events: durable streams with consumer groups (Micro v3 events, NATS JetStream).

**Publish.** :meth:`Events.publish` appends an event to its topic's log and returns an
:class:`Ack` once the event is durable (for the SQLite backend: after the fsync of the
transaction that holds it). Each topic numbers its events 1, 2, 3, ... and stamps them with
a wall-clock ``timestamp`` that never goes backwards within the topic. A ``message_id`` seen
on the same topic within the de-duplication window (default 2 minutes) appends nothing and
returns the first sequence with ``duplicate=True``; after the window the id is new again.
``deliver_at`` (wall clock) holds the event back from consumers until that time.

**Consume.** :meth:`Events.consume` joins a consumer *group* of a topic. Members of a group
share its events: each event goes to one member at a time, lowest sequence first. The group
remembers its position and each event's delivery state (durably, in SQLite), so a member
that comes back goes on where the group stopped. ``start`` (``"new"``, ``"first"``, a
sequence or a wall-clock time) only matters when the group is created. Delivery is
at-least-once:

- ``auto_ack=True``: an event counts as acknowledged once the consumer hands it to its
  caller (over RPC the client acks it then; events still in its prefetch buffer when it
  closes go back to the group without counting as a delivery).
- ``auto_ack=False``: the member calls :meth:`Consumer.ack` or :meth:`Consumer.nack`. An event
  not acked within ``ack_wait`` seconds, nacked, or held by a member that closes is delivered
  again (to any member; a nack may ask for a ``delay``). A delivery that fails for the
  ``max_deliver``-th time appends the event to the dead-letter topic (default
  ``f"{topic}.dead"``) with the metadata below, and the group moves past it.
- Events with the same ``key`` are delivered in sequence order, and one is not delivered
  while an earlier event with that key is in flight (delivered, not yet acked) in the group.
- A member holds at most ``max_ack_pending`` unacked events.

Dead-lettered events keep body, key and metadata, plus ``dead_letter.topic``,
``dead_letter.sequence``, ``dead_letter.group``, ``dead_letter.deliveries`` and
``dead_letter.timestamp`` (the original publish time).

**History and retention.** :meth:`Events.read` returns stored events by sequence or time.
A topic keeps events until its retention (``max_age`` seconds, ``max_events``,
``max_bytes`` of bodies; any of them) removes the oldest, in a background purge or when
:meth:`Events.purge` is called. Purged events are gone for groups too.

**Time.** Backends take ``clock`` (wall-clock seconds, default :func:`time.time`); ack
wait, nack delay, ``deliver_at``, the de-duplication window and retention all read it. A
waiting consumer re-reads the clock at least every ``poll_interval`` real seconds, so tests
advance a fake clock and see the effect within that interval, without sleeping.

Backends: :mod:`micro.events.memory` (in-process), :mod:`micro.events.sqlite` (the durable
log ``micro server`` hosts) and :mod:`micro.events.rpc` (the client of the ``events``
service). Errors: ``bad_request`` (invalid names, options, unknown start), ``too_large``
(body over the limit), ``not_found`` (unknown topic in :meth:`Events.read`; ack or nack of
an event that is not in flight for this consumer).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "DEDUPE_WINDOW",
    "MAX_BODY",
    "MAX_FETCH",
    "MAX_KEY",
    "MAX_MESSAGE_ID",
    "MAX_METADATA",
    "MAX_METADATA_KEY",
    "MAX_METADATA_VALUE",
    "MAX_READ",
    "NAME_PATTERN",
    "Ack",
    "Consumer",
    "Event",
    "Events",
    "Retention",
    "Start",
    "TopicInfo",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
"""What topic and group names look like."""

MAX_BODY = 1024 * 1024
"""Default largest body, in bytes (configurable per backend)."""

MAX_KEY = 255
"""Longest ordering key, in characters."""

MAX_MESSAGE_ID = 255
"""Longest de-duplication id, in characters."""

MAX_METADATA = 64
"""Most metadata entries per event."""

MAX_METADATA_KEY = 255
"""Longest metadata name, in characters."""

MAX_METADATA_VALUE = 4096
"""Longest metadata value, in characters."""

MAX_READ = 1000
"""Most events one :meth:`Events.read` returns."""

MAX_FETCH = 1000
"""Most events one :meth:`Consumer.fetch` returns."""

DEDUPE_WINDOW = 120.0
"""Default de-duplication window, in seconds."""

Start = Literal["new", "first"] | int | float
"""Where a new group begins: ``"new"`` (events published from now on), ``"first"`` (the
oldest stored event), a sequence (``int``) or a wall-clock time (``float``: the first event
stamped at or after it)."""


class Ack(msgspec.Struct, frozen=True):
    """A durable publish: the event's ``sequence`` in ``topic``; ``duplicate`` when the
    message id had been seen and nothing was appended."""

    topic: str
    sequence: int
    duplicate: bool = False


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stored event. ``deliveries`` counts deliveries to the group, this one included
    (0 in :meth:`Events.read`)."""

    topic: str
    sequence: int
    timestamp: float
    body: bytes
    metadata: dict[str, str] = {}
    key: str | None = None
    deliveries: int = 0


class Retention(msgspec.Struct, frozen=True, omit_defaults=True):
    """How long a topic keeps events: any limit that is set removes the oldest events."""

    max_age: float | None = None
    max_events: int | None = None
    max_bytes: int | None = None


class TopicInfo(msgspec.Struct, frozen=True):
    """A topic: its stored range ``first_sequence..last_sequence`` (empty when first is
    last + 1), event count, body bytes and retention."""

    name: str
    first_sequence: int
    last_sequence: int
    count: int
    bytes: int
    retention: Retention = Retention()


@runtime_checkable
class Consumer(Protocol):
    """One member of a consumer group: iterate it for events, ack them (manual mode),
    close it when done."""

    topic: str
    group: str

    def __aiter__(self) -> AsyncIterator[Event]:
        """Itself: ``async for event in consumer`` until it is closed."""
        ...

    async def __anext__(self) -> Event:
        """The next event, waiting for one; ``StopAsyncIteration`` once closed."""
        ...

    async def fetch(self, max_events: int = 100, timeout: float | None = None) -> list[Event]:
        """Up to ``max_events`` events, waiting up to ``timeout`` seconds (None: until there
        is one) for the first; ``[]`` at the timeout or once closed."""
        ...

    async def ack(self, event: Event) -> None:
        """Mark ``event`` processed (manual mode); ``not_found`` if it is not in flight here."""
        ...

    async def nack(self, event: Event, delay: float = 0.0) -> None:
        """Give ``event`` back for redelivery after ``delay`` seconds (manual mode)."""
        ...

    async def close(self) -> None:
        """Leave the group; events this member holds unacked are delivered again at once."""
        ...

    async def __aenter__(self) -> Consumer:
        """Itself."""
        ...

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        ...


@runtime_checkable
class Events(Protocol):
    """What every events backend provides."""

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
        """Append an event to ``topic``; return once it is durable."""
        ...

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
    ) -> Consumer:
        """Join ``group`` of ``topic`` (created at ``start`` if new)."""
        ...

    async def read(self, topic: str, *, start: Start = "first", limit: int = 100) -> list[Event]:
        """Up to ``limit`` stored events from ``start`` on (``"new"``: none)."""
        ...

    async def topics(self) -> list[TopicInfo]:
        """Every topic, by name."""
        ...

    async def retention(
        self,
        topic: str,
        *,
        max_age: float | None = None,
        max_events: int | None = None,
        max_bytes: int | None = None,
    ) -> TopicInfo:
        """Set ``topic``'s retention, replacing the backend default for it (no limit given:
        keep everything)."""
        ...

    async def purge(self) -> int:
        """Apply retention now; return how many events were removed."""
        ...

    async def close(self) -> None:
        """Close consumers and release resources."""
        ...
