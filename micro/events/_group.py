"""A consumer group's delivery state and its dispatch: who gets which event, and when.

Every sequence below :attr:`Group.cursor` is either settled (acked, auto-acked or
dead-lettered), in flight at one member (:attr:`Group.inflight`) or waiting
(:attr:`Group.waiting`: nacked, expired, released, delayed or held back behind an earlier
event with the same key). That is also what is persisted: the cursor plus a row per
unsettled event, so a restart loses nothing that was not acked.

An event is deliverable when it is waiting, due, and the head (lowest unsettled sequence)
of its key. Deliverable waiting events sit in :attr:`Group.ready` (a heap of sequences, all
below the cursor, so they go first: lowest sequence first overall). Timers (a heap of
``(due, seq, token)``) bring delayed events to ready and expire deliveries whose ack wait
passed; the token tells a stale timer from a live one.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque

from ..errors import bad_request, not_found
from . import Event
from ._group_parts import Delivery, Host, Member, Ticket, Waiting
from ._log import Record, TopicState
from ._options import ID

__all__ = ["Group"]

_WAIT = 0  # timer token of a waiting event (a delivery's token is its count, >= 1)
_READ_AHEAD = 256


class Group:
    """One consumer group of one topic. Mutating methods run under :attr:`lock`."""

    def __init__(self, host: Host, topic: TopicState, name: str, cursor: int) -> None:
        self.host = host
        self.topic = topic
        self.name = name
        self.cursor = cursor
        self.lookahead: deque[Record] = deque()
        self.waiting: dict[int, Waiting] = {}
        self.ready: list[int] = []
        self.timers: list[tuple[float, int, int]] = []
        self.inflight: dict[int, Delivery] = {}
        self.keys: dict[str, deque[int]] = {}
        self.lock = asyncio.Lock()
        self.waiters: list[Ticket] = []  # in the order members queued

    # -- waking members ------------------------------------------------------------------

    def wake(self) -> None:
        """Let every waiting member look again (in line order; they keep their places)."""
        for ticket in self.waiters:
            if not ticket.future.done():
                ticket.future.set_result(None)

    def wake_head(self) -> None:
        """Let the first waiting member look again."""
        if self.waiters and not self.waiters[0].future.done():
            self.waiters[0].future.set_result(None)

    def next_due(self) -> float | None:
        """When the earliest timer fires, if any."""
        return self.timers[0][0] if self.timers else None

    def restore(self, seq: int, deliveries: int, due: float | None, key: str | None) -> None:
        """Bring back a persisted unsettled event (in sequence order; then call
        :meth:`settle_restore`)."""
        self.waiting[seq] = Waiting(seq, deliveries, due, key)
        if key is not None:
            self.keys.setdefault(key, deque()).append(seq)

    def settle_restore(self, now: float) -> None:
        """After :meth:`restore`: queue what is deliverable, arm timers."""
        for waiting in self.waiting.values():
            self._consider(waiting, now)

    # -- dispatch ------------------------------------------------------------------------

    async def take(self, member: Member, limit: int, now: float, out: list[Event]) -> None:
        """Hand up to ``limit`` deliverable events to ``member`` (appended to ``out`` as
        they are taken), lowest sequence first."""
        await self.fire_timers(now)
        if not member.options.auto_ack:
            limit = min(limit, member.options.max_ack_pending - len(member.held))
        limit += len(out)
        start = self.cursor
        try:
            while len(out) < limit:
                if self.ready:
                    seq = heapq.heappop(self.ready)
                    waiting = self.waiting.get(seq)
                    if waiting is None or not self._deliverable(waiting, now):
                        continue
                    try:
                        record = await self.host.record(self.topic, seq)
                    except BaseException:
                        heapq.heappush(self.ready, seq)  # cancelled: still deliverable
                        raise
                    del self.waiting[seq]
                    if record is None:  # purged by retention meanwhile
                        self._settle(seq, waiting.key, True, now)
                        continue
                    out.append(self._deliver(member, record, waiting.deliveries + 1, True, now))
                    continue
                record = await self._next_record()
                if record is None:
                    break
                if self._admit(record, now):
                    out.append(self._deliver(member, record, 1, False, now))
        finally:
            if self.cursor != start:
                self.host.persist_cursor(self.topic.name, self.name, self.cursor)

    def _deliverable(self, waiting: Waiting, now: float) -> bool:
        if waiting.due is not None and waiting.due > now:
            return False
        return waiting.key is None or self.keys[waiting.key][0] == waiting.seq

    async def _next_record(self) -> Record | None:
        """The record at the cursor (advancing past purged ones), or None at the end."""
        topic = self.topic
        lookahead = self.lookahead
        while lookahead and lookahead[0].seq < self.cursor:
            lookahead.popleft()
        if lookahead and lookahead[0].seq == self.cursor:
            return lookahead.popleft()
        lookahead.clear()
        self.cursor = max(self.cursor, topic.first_seq)
        if self.cursor > topic.last_seq:
            return None
        record = topic.tail.get(self.cursor)
        if record is not None:
            return record
        batch = await self.host.read_records(topic, self.cursor, _READ_AHEAD)
        batch = [r for r in batch if r.seq <= topic.last_seq]
        if not batch:
            return None
        lookahead.extend(batch[1:])
        return batch[0]

    def _admit(self, record: Record, now: float) -> bool:
        """The cursor passes ``record``: True when it may be delivered at once, else it
        waits (delayed, or behind an earlier event with its key)."""
        seq = record.seq
        self.cursor = seq + 1
        due = record.deliver_at
        if due is not None and due <= now:
            due = None
        head = True
        if record.key is not None:
            queue = self.keys.get(record.key)
            if queue is None:
                queue = self.keys[record.key] = deque()
            queue.append(seq)
            head = len(queue) == 1
        if head and due is None:
            return True
        waiting = self.waiting[seq] = Waiting(seq, 0, due, record.key)
        self.host.persist_pending(self.topic.name, self.name, seq, 0, due)
        self._consider(waiting, now)
        return False

    def _deliver(
        self, member: Member, record: Record, deliveries: int, persisted: bool, now: float
    ) -> Event:
        event = record.event(self.topic.name, deliveries)
        if member.options.auto_ack:
            self._settle(record.seq, record.key, persisted, now)
            return event
        seq = record.seq
        self.inflight[seq] = Delivery(seq, member, deliveries, record.key)
        member.held[seq] = deliveries
        self.host.persist_pending(self.topic.name, self.name, seq, deliveries, None)
        heapq.heappush(self.timers, (now + member.options.ack_wait, seq, deliveries))
        return event

    def _consider(self, waiting: Waiting, now: float) -> None:
        """Queue ``waiting`` if deliverable now, arm its timer if it is the head of its key
        but not due yet; an event behind its key is considered when it becomes the head."""
        if waiting.key is not None and self.keys[waiting.key][0] != waiting.seq:
            return
        if waiting.due is not None and waiting.due > now:
            heapq.heappush(self.timers, (waiting.due, waiting.seq, _WAIT))
            return
        heapq.heappush(self.ready, waiting.seq)
        if self.waiters:
            self.wake()

    def _settle(self, seq: int, key: str | None, persisted: bool, now: float) -> None:
        """``seq`` is done for this group: forget it, let the next event of its key go."""
        if persisted:
            self.host.persist_settled(self.topic.name, self.name, seq)
        if key is None:
            return
        queue = self.keys.get(key)
        if queue is None:
            return
        if queue and queue[0] == seq:
            queue.popleft()
        elif seq in queue:
            queue.remove(seq)
        if not queue:
            del self.keys[key]
            return
        waiting = self.waiting.get(queue[0])
        if waiting is not None:
            self._consider(waiting, now)

    # -- acknowledgements ----------------------------------------------------------------

    def _held(self, member: Member, event: Event) -> Delivery:
        if event.topic != self.topic.name:
            raise bad_request(
                ID,
                f"event of topic {event.topic!r} cannot be settled by a consumer of "
                f"{self.topic.name!r}",
            )
        delivery = self.inflight.get(event.sequence)
        if (
            delivery is None
            or delivery.member is not member
            or (delivery.deliveries != event.deliveries)
        ):
            raise not_found(
                ID,
                f"event {event.sequence} of {event.topic!r} (delivery {event.deliveries}) "
                "is not in flight at this consumer: settled already, or its ack wait expired",
            )
        return delivery

    async def ack(self, member: Member, event: Event, now: float) -> None:
        """``member`` processed ``event``."""
        await self.fire_timers(now)
        delivery = self._held(member, event)
        del self.inflight[delivery.seq]
        del member.held[delivery.seq]
        self._settle(delivery.seq, delivery.key, True, now)
        if len(self.timers) > 4 * (len(self.inflight) + len(self.waiting)) + 1024:
            self._compact_timers()

    def _compact_timers(self) -> None:
        """Drop the timers of settled deliveries (an ack leaves its timer in the heap)."""
        live = []
        for entry in self.timers:
            due, seq, token = entry
            if token == _WAIT:
                waiting = self.waiting.get(seq)
                if waiting is not None and waiting.due == due:
                    live.append(entry)
            else:
                delivery = self.inflight.get(seq)
                if delivery is not None and delivery.deliveries == token:
                    live.append(entry)
        heapq.heapify(live)
        self.timers = live

    async def nack(self, member: Member, event: Event, delay: float, now: float) -> None:
        """``member`` gives ``event`` back, to be delivered again after ``delay`` seconds."""
        await self.fire_timers(now)
        await self._fail(self._held(member, event), delay, now)

    async def give_back(self, member: Member, event: Event, now: float) -> None:
        """``member`` returns ``event`` unseen (it never reached the caller): it waits for
        redelivery as if this delivery had not happened."""
        await self.fire_timers(now)
        delivery = self._held(member, event)
        del self.inflight[delivery.seq]
        del member.held[delivery.seq]
        self._wait(delivery.seq, delivery.deliveries - 1, None, delivery.key, now)

    async def release(self, member: Member, now: float) -> None:
        """``member`` leaves: what it holds is delivered again at once."""
        for seq in sorted(member.held):
            delivery = self.inflight.get(seq)
            if delivery is not None and delivery.member is member:
                await self._fail(delivery, 0.0, now)
        member.held.clear()

    async def _fail(self, delivery: Delivery, delay: float, now: float) -> None:
        """A delivery ended without an ack: wait for redelivery or, at the member's
        ``max_deliver``, go to the dead-letter topic."""
        seq = delivery.seq
        del self.inflight[seq]
        delivery.member.held.pop(seq, None)
        options = delivery.member.options
        if delivery.deliveries >= options.max_deliver:
            record = await self.host.record(self.topic, seq)
            if record is not None:
                try:
                    await self.host.dead_letter(
                        record,
                        self.topic.name,
                        self.name,
                        delivery.deliveries,
                        options.dead_letter_topic,
                    )
                except BaseException:
                    self._wait(seq, delivery.deliveries, None, delivery.key, now)
                    raise
            self._settle(seq, delivery.key, True, now)
            return
        self._wait(seq, delivery.deliveries, now + delay if delay > 0 else None, delivery.key, now)

    def _wait(
        self, seq: int, deliveries: int, due: float | None, key: str | None, now: float
    ) -> None:
        waiting = self.waiting[seq] = Waiting(seq, deliveries, due, key)
        self.host.persist_pending(self.topic.name, self.name, seq, deliveries, due)
        self._consider(waiting, now)

    async def fire_timers(self, now: float) -> None:
        """Bring due delayed events to ready; expire deliveries past their ack wait."""
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, seq, token = heapq.heappop(timers)
            if token == _WAIT:
                waiting = self.waiting.get(seq)
                if waiting is not None and waiting.due is not None and waiting.due <= now:
                    self._consider(waiting, now)
                continue
            delivery = self.inflight.get(seq)
            if delivery is not None and delivery.deliveries == token:
                await self._fail(delivery, 0.0, now)

    # -- retention -----------------------------------------------------------------------

    def purge_through(self, through: int, now: float) -> None:
        """Records up to ``through`` are gone: skip them; waiting ones are dropped (events
        in flight stay until they are settled)."""
        if self.cursor <= through:
            self.cursor = through + 1
            self.host.persist_cursor(self.topic.name, self.name, self.cursor)
        while self.lookahead and self.lookahead[0].seq <= through:
            self.lookahead.popleft()
        for seq in [s for s in self.waiting if s <= through]:
            waiting = self.waiting.pop(seq)
            self._settle(seq, waiting.key, True, now)
