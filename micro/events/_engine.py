"""The engine shared by the memory and SQLite backends: publish with de-duplication,
consumer groups, dead-lettering and the background upkeep (history and retention come
from :class:`~micro.events._history.History`).

A backend subclasses :class:`LogEngine` and provides storage through the hooks of
:class:`~micro.events._history.History` (``_open``, ``_write``, ``_load``, ...): the memory
backend keeps every record in the topic's tail and persists nothing; the SQLite backend
writes through a group-commit thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from ..context import current_context
from ..errors import MicroError, unavailable
from . import Ack, Start
from ._consumer import LocalConsumer
from ._group import Group
from ._history import History
from ._log import Dedupe, Record, TopicState
from ._options import ID, ConsumeOptions, Options, check_publish

__all__ = ["LogEngine"]

log = logging.getLogger("micro.events")


class LogEngine(History):
    """Everything but storage. Opens on first use (or :meth:`start`); :meth:`close` ends it."""

    def __init__(self, clock: Callable[[], float], options: Options) -> None:
        super().__init__(clock, options)
        self.poll_interval = options.poll_interval
        self._consumers: set[LocalConsumer] = set()
        self._opening: asyncio.Future[None] | None = None
        self._open_done = False
        self._closed = False
        self._upkeep: asyncio.Task[None] | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage and start the background upkeep (done on first use otherwise)."""
        if self._closed:
            raise unavailable(ID, "the events backend is closed")
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._start())
        await asyncio.shield(self._opening)

    async def _start(self) -> None:
        await self._open()
        self._open_done = True
        self._upkeep = asyncio.get_running_loop().create_task(self._maintain())

    async def _ready(self) -> None:
        if not self._open_done or self._closed:
            await self.start()

    async def close(self) -> None:
        """Stop consumers (what they hold stays unacked) and close storage."""
        if self._closed:
            return
        self._closed = True
        if self._opening is not None:  # let an open in progress finish first
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._upkeep is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
        for consumer in list(self._consumers):
            consumer.shutdown()
        self._consumers.clear()
        await self._close_storage()

    def forget(self, consumer: LocalConsumer) -> None:
        """A consumer closed."""
        self._consumers.discard(consumer)

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        last_purge = loop.time()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.tick()
                if loop.time() - last_purge >= self.options.purge_interval:
                    last_purge = loop.time()
                    await self.purge()
            except MicroError as err:
                log.warning("events upkeep: %s", err)
            except Exception:
                log.exception("events upkeep failed")

    async def tick(self) -> None:
        """Fire due timers (expired acks, delays) of every group and forget message ids
        older than the de-duplication window. The upkeep runs it every ``poll_interval``."""
        await self._ready()
        now = self.clock()
        oldest = now - self.options.dedupe_window
        for state in list(self._topics.values()):
            for group in list(state.groups.values()):
                due = group.next_due()
                if due is not None and due <= now:
                    async with group.lock:
                        await group.fire_timers(now)
            dedupe = state.dedupe
            while dedupe:
                message_id, entry = next(iter(dedupe.items()))
                if entry.pending is not None or entry.ts > oldest:
                    break
                del dedupe[message_id]

    # -- publish -------------------------------------------------------------------------

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
        """Append an event; return once it is durable (or the first sequence of its id)."""
        metadata = {} if metadata is None else metadata
        check_publish(self.options, topic, body, metadata, key, message_id, deliver_at)
        await self._ready()
        state = self._topic(topic)
        entry: Dedupe | None = None
        if message_id is not None:
            seq, entry = await self._dedupe(state, message_id)
            if entry is None:
                return Ack(topic, seq, duplicate=True)
        stamp = None if deliver_at is None else float(deliver_at)
        stored_metadata = dict(metadata)
        ctx = current_context()
        if ctx is not None and "traceparent" in ctx.metadata:
            # published while handling a traced call: the event carries the trace on
            stored_metadata.setdefault("traceparent", ctx.metadata["traceparent"])
        record = Record(0, 0.0, body, stored_metadata, key, stamp, message_id)
        future = self._append(state, record)
        if entry is not None:
            future.add_done_callback(functools.partial(self._deduped, state, message_id, entry))
        stored = await asyncio.shield(future)
        return Ack(topic, stored.seq)

    async def _dedupe(self, state: TopicState, message_id: str) -> tuple[int, Dedupe | None]:
        """``(seq, None)`` for a duplicate within the window; else ``(0, reservation)``."""
        while True:
            now = self.clock()
            seen = state.dedupe.get(message_id)
            if seen is None or now - seen.ts >= self.options.dedupe_window:
                break
            if seen.pending is None:
                return seen.seq, None
            seq = await asyncio.shield(seen.pending)
            if seq:
                return seq, None  # else the first publish failed: try as new
        state.dedupe.pop(message_id, None)  # re-inserted at the end: the dict stays in time order
        entry = state.dedupe[message_id] = Dedupe(
            now, pending=asyncio.get_running_loop().create_future()
        )
        return 0, entry

    @staticmethod
    def _deduped(
        state: TopicState, message_id: str | None, entry: Dedupe, future: asyncio.Future[Record]
    ) -> None:
        pending = entry.pending
        entry.pending = None
        if future.cancelled() or future.exception() is not None:
            if message_id is not None and state.dedupe.get(message_id) is entry:
                del state.dedupe[message_id]
            if pending is not None:
                pending.set_result(0)
            return
        entry.seq = future.result().seq
        if pending is not None:
            pending.set_result(entry.seq)

    def _append(self, state: TopicState, record: Record) -> asyncio.Future[Record]:
        """Stamp ``record`` (never before the topic's last stamp) and write it."""
        record.ts = max(self.clock(), state.last_ts)
        state.last_ts = record.ts
        return self._write(state, record)

    def _committed(self, state: TopicState, record: Record) -> None:
        """Called by storage, in sequence order, once ``record`` is durable."""
        state.committed(record)
        for group in state.groups.values():
            if group.waiters:
                group.wake()

    async def dead_letter(
        self, record: Record, topic: str, group: str, deliveries: int, dead_topic: str
    ) -> None:
        """Append ``record`` to ``dead_topic`` with metadata naming where it came from."""
        metadata = dict(record.metadata)
        metadata.update(
            {
                "dead_letter.topic": topic,
                "dead_letter.sequence": str(record.seq),
                "dead_letter.group": group,
                "dead_letter.deliveries": str(deliveries),
                "dead_letter.timestamp": repr(record.ts),
            }
        )
        dead = Record(0, 0.0, record.body, metadata, record.key, None, None)
        await asyncio.shield(self._append(self._topic(dead_topic), dead))

    # -- consume -------------------------------------------------------------------------

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
    ) -> LocalConsumer:
        """Join ``group`` of ``topic``, creating the group at ``start`` if it is new."""
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
        await self._ready()
        state = self._topic(topic)
        found = state.groups.get(group)
        if found is None:
            cursor = await self._start_seq(state, start)
            found = state.groups.get(group)  # created by a concurrent call meanwhile?
            if found is None:
                found = state.groups[group] = Group(self, state, group, cursor)
                self._persist_group(topic, group, cursor)
        consumer = LocalConsumer(self, found, options)
        self._consumers.add(consumer)
        return consumer
