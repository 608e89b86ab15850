"""The base of the engine: topic state, the storage hooks a backend provides, and what
reads the log (history, start positions) or trims it (retention)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable

from ..errors import not_found
from . import Event, Retention, Start, TopicInfo
from ._log import Record, Tail, TopicState
from ._options import ID, Options, check_limit, check_name, check_retention, check_start

__all__ = ["History"]


class History(abc.ABC):
    """Topics and their stored records. :class:`~micro.events._engine.LogEngine` adds
    publishing and consuming; backends fill in the storage hooks."""

    def __init__(self, clock: Callable[[], float], options: Options) -> None:
        self.clock = clock
        self.options = options
        self._topics: dict[str, TopicState] = {}

    @abc.abstractmethod
    async def _ready(self) -> None:
        """Open the backend if it is not yet (the engine's life cycle)."""
        ...

    # -- topics and history ----------------------------------------------------------------

    def _topic(self, name: str) -> TopicState:
        state = self._topics.get(name)
        if state is None:
            state = self._topics[name] = TopicState(name, self._new_tail())
            self._persist_topic(name)
        return state

    async def topics(self) -> list[TopicInfo]:
        """Every topic, by name."""
        await self._ready()
        default = self.options.retention
        return [self._topics[name].info(default) for name in sorted(self._topics)]

    async def retention(
        self,
        topic: str,
        *,
        max_age: float | None = None,
        max_events: int | None = None,
        max_bytes: int | None = None,
    ) -> TopicInfo:
        """Set ``topic``'s retention (replacing the default for it)."""
        check_name(topic, "topic")
        retention = Retention(max_age, max_events, max_bytes)
        check_retention(retention)
        await self._ready()
        state = self._topic(topic)
        state.retention = retention
        self._persist_retention(topic, retention)
        return state.info(self.options.retention)

    async def _start_seq(self, state: TopicState, start: Start) -> int:
        if start == "new":
            return state.last_seq + 1
        if start == "first":
            return state.first_seq
        if isinstance(start, int):
            return max(start, state.first_seq)
        return await self._seq_at(state, float(start))

    async def _seq_at(self, state: TopicState, ts: float) -> int:
        """The first sequence stamped at or after ``ts`` (last + 1 when none is)."""
        if state.count == 0:
            return state.last_seq + 1
        first = state.tail.first
        oldest = state.tail.get(first) if first is not None else None
        if state.complete or (oldest is not None and oldest.ts < ts):
            seq = state.tail.seq_at(ts)
        else:
            seq = await self._seq_at_stored(state, ts)
        return seq if seq is not None else state.last_seq + 1

    async def read(self, topic: str, *, start: Start = "first", limit: int = 100) -> list[Event]:
        """Up to ``limit`` stored events from ``start`` on."""
        check_name(topic, "topic")
        check_start(start)
        check_limit(limit)
        await self._ready()
        state = self._topics.get(topic)
        if state is None:
            raise not_found(ID, f"no topic {topic!r}")
        seq = max(await self._start_seq(state, start), state.first_seq)
        if seq > state.last_seq:
            return []
        first = state.tail.first
        if first is not None and seq >= first:
            records = state.tail.since(seq, limit)
        else:
            records = [r for r in await self._load(state, seq, limit) if r.seq <= state.last_seq]
        return [r.event(topic) for r in records]

    async def record(self, topic: TopicState, seq: int) -> Record | None:
        """The stored record ``seq`` of ``topic``."""
        record = topic.tail.get(seq)
        if record is not None or topic.complete or seq < topic.first_seq:
            return record
        found = await self._load(topic, seq, 1)
        return found[0] if found and found[0].seq == seq else None

    async def read_records(self, topic: TopicState, seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` stored records of ``topic`` from ``seq`` on."""
        first = topic.tail.first
        if first is not None and seq >= first:
            return topic.tail.since(seq, limit)
        return await self._load(topic, seq, limit)

    # -- retention -----------------------------------------------------------------------

    async def purge(self) -> int:
        """Apply every topic's retention now; return how many events were removed."""
        await self._ready()
        removed = 0
        for state in list(self._topics.values()):
            removed += await self._purge_topic(state, self.clock())
        return removed

    async def _purge_topic(self, state: TopicState, now: float) -> int:
        rules = state.retention if state.retention is not None else self.options.retention
        if state.count == 0:
            return 0
        through = 0
        if rules.max_events is not None:
            through = state.last_seq - rules.max_events
        if rules.max_age is not None:
            through = max(through, await self._seq_at(state, now - rules.max_age) - 1)
        if rules.max_bytes is not None and state.bytes > rules.max_bytes:
            excess = state.bytes - rules.max_bytes
            if state.complete:
                point = state.tail.bytes_through(excess)
            else:
                point = await self._bytes_through_stored(state, excess)
            through = max(through, point or 0)
        through = min(through, state.last_seq)
        if through < state.first_seq:
            return 0
        count, size = await self._delete_through(state, through)
        state.removed(through, count, size)
        for group in list(state.groups.values()):
            async with group.lock:
                group.purge_through(through, now)
        return count

    # -- storage hooks -------------------------------------------------------------------

    @abc.abstractmethod
    def _new_tail(self) -> Tail:
        """The tail of a new topic."""
        ...

    @abc.abstractmethod
    async def _open(self) -> None:
        """Open storage and load topics and groups into :attr:`_topics`."""
        ...

    @abc.abstractmethod
    def _write(self, state: TopicState, record: Record) -> asyncio.Future[Record]:
        """Store ``record`` (assigning its sequence); the future resolves once it is durable
        and :meth:`_committed` has seen it."""
        ...

    @abc.abstractmethod
    async def _load(self, state: TopicState, seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` stored records from ``seq`` on, from storage."""
        ...

    @abc.abstractmethod
    async def _seq_at_stored(self, state: TopicState, ts: float) -> int | None:
        """The first stored sequence stamped at or after ``ts``."""
        ...

    @abc.abstractmethod
    async def _bytes_through_stored(self, state: TopicState, excess: int) -> int | None:
        """The smallest sequence whose bodies, from the oldest, add up to ``excess``."""
        ...

    @abc.abstractmethod
    async def _delete_through(self, state: TopicState, through: int) -> tuple[int, int]:
        """Remove records up to ``through``; return how many and their body bytes."""
        ...

    def _persist_topic(self, topic: str) -> None:
        """Record that ``topic`` exists."""

    def _persist_retention(self, topic: str, retention: Retention) -> None:
        """Record ``topic``'s retention."""

    def _persist_group(self, topic: str, group: str, cursor: int) -> None:
        """Record a new group."""

    def persist_cursor(self, topic: str, group: str, cursor: int) -> None:
        """Record a group's cursor."""

    def persist_pending(
        self, topic: str, group: str, seq: int, deliveries: int, due: float | None
    ) -> None:
        """Record an unsettled event."""

    def persist_settled(self, topic: str, group: str, seq: int) -> None:
        """Forget an unsettled event."""

    async def _close_storage(self) -> None:
        """Release storage."""
