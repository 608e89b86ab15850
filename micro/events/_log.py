"""The in-memory side of a topic: its counters, de-duplication ids and newest records."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import TYPE_CHECKING

import msgspec

from . import Event, Retention, TopicInfo

if TYPE_CHECKING:
    from ._group import Group

__all__ = ["Dedupe", "Record", "Tail", "TopicState"]


class Record(msgspec.Struct, gc=False, array_like=True):
    """One stored event, as the log keeps it."""

    seq: int
    ts: float
    body: bytes
    metadata: dict[str, str]
    key: str | None
    deliver_at: float | None
    message_id: str | None

    def event(self, topic: str, deliveries: int = 0) -> Event:
        """The public form of this record."""
        return Event(topic, self.seq, self.ts, self.body, self.metadata, self.key, deliveries)


class Tail:
    """A contiguous run of records ending at the newest, in sequence order: the whole log
    for the memory backend, a bounded cache of it for SQLite (``max_events``, ``max_bytes``;
    ``None``: unbounded)."""

    __slots__ = ("_items", "_start", "bytes", "max_bytes", "max_events")

    def __init__(self, max_events: int | None = None, max_bytes: int | None = None) -> None:
        self._items: list[Record] = []
        self._start = 0
        self.bytes = 0
        self.max_events = max_events
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._items) - self._start

    @property
    def first(self) -> int | None:
        """The sequence of the oldest record held, if any."""
        return self._items[self._start].seq if len(self) else None

    def get(self, seq: int) -> Record | None:
        """The record ``seq`` when held."""
        if not len(self):
            return None
        index = seq - self._items[self._start].seq
        if 0 <= index < len(self):
            return self._items[self._start + index]
        return None

    def append(self, record: Record) -> None:
        """Add the newest record (its sequence must follow the last), trimming to bounds."""
        if len(self) and record.seq != self._items[-1].seq + 1:
            self.clear()  # not contiguous (cannot happen while commits arrive in order)
        self._items.append(record)
        self.bytes += len(record.body)
        if self.max_events is not None and len(self) > self.max_events:
            self._drop(1)
        while self.max_bytes is not None and self.bytes > self.max_bytes and len(self) > 1:
            self._drop(1)

    def _drop(self, count: int) -> None:
        for record in self._items[self._start : self._start + count]:
            self.bytes -= len(record.body)
        self._start += count
        if self._start > 1024 and self._start * 2 > len(self._items):
            del self._items[: self._start]
            self._start = 0

    def drop_through(self, seq: int) -> tuple[int, int]:
        """Forget records up to ``seq``; return how many and their body bytes."""
        first = self.first
        if first is None or seq < first:
            return 0, 0
        count = min(len(self), seq - first + 1)
        size = sum(len(r.body) for r in self._items[self._start : self._start + count])
        self._drop(count)
        return count, size

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()
        self._start = 0
        self.bytes = 0

    def since(self, seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` records from ``seq`` on (``seq`` must be held or newer)."""
        first = self.first
        if first is None:
            return []
        index = self._start + max(0, seq - first)
        return self._items[index : index + limit]

    def seq_at(self, ts: float) -> int | None:
        """The first held sequence stamped at or after ``ts`` (None: none is)."""
        index = bisect_left(self._items, ts, lo=self._start, key=lambda r: r.ts)
        return self._items[index].seq if index < len(self._items) else None

    def bytes_through(self, excess: int) -> int | None:
        """The smallest held sequence such that the bodies up to it add up to ``excess``."""
        total = 0
        for record in self._items[self._start :]:
            total += len(record.body)
            if total >= excess:
                return record.seq
        return None


class Dedupe:
    """A message id seen on a topic: when, and the sequence it got (``pending`` until the
    first publish with it is durable)."""

    __slots__ = ("pending", "seq", "ts")

    def __init__(self, ts: float, seq: int = 0, pending: asyncio.Future[int] | None = None):
        self.ts = ts
        self.seq = seq
        self.pending = pending


class TopicState:
    """What the engine knows about one topic."""

    __slots__ = (
        "bytes",
        "count",
        "dedupe",
        "first_seq",
        "groups",
        "last_seq",
        "last_ts",
        "name",
        "retention",
        "tail",
    )

    def __init__(self, name: str, tail: Tail) -> None:
        self.name = name
        self.last_seq = 0
        self.first_seq = 1  # the oldest stored; last_seq + 1 when the topic is empty
        self.count = 0
        self.bytes = 0
        self.last_ts = 0.0
        self.retention: Retention | None = None  # None: the backend default
        self.tail = tail
        self.groups: dict[str, Group] = {}
        self.dedupe: dict[str, Dedupe] = {}

    @property
    def complete(self) -> bool:
        """True when :attr:`tail` holds every stored record."""
        return self.count == 0 or self.tail.first == self.first_seq

    def committed(self, record: Record) -> None:
        """A record became durable: count it and keep it in the tail."""
        if self.count == 0:
            self.first_seq = record.seq
        self.last_seq = record.seq
        self.last_ts = max(self.last_ts, record.ts)
        self.count += 1
        self.bytes += len(record.body)
        self.tail.append(record)

    def removed(self, through: int, count: int, size: int) -> None:
        """Records up to ``through`` were purged (``count`` of them, ``size`` bytes)."""
        self.first_seq = max(self.first_seq, through + 1)
        self.count = max(0, self.count - count)
        self.bytes = max(0, self.bytes - size)
        if self.count == 0:
            self.first_seq = self.last_seq + 1

    def info(self, default: Retention) -> TopicInfo:
        """The public description of this topic."""
        return TopicInfo(
            self.name,
            self.first_seq,
            self.last_seq,
            self.count,
            self.bytes,
            self.retention if self.retention is not None else default,
        )
