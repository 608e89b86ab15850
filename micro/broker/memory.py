"""The in-process broker: complete and deterministic.

``publish`` delivers synchronously (it never waits): when it returns, the message sits in
the buffer of every subscription it went to, or was counted as dropped there. The clock
(``clock=``) only stamps :attr:`~micro.broker.Message.timestamp`; nothing here expires.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import deque
from collections.abc import Callable

from ..errors import unavailable
from . import (
    DEFAULT_BUFFER,
    DEFAULT_MAX_BODY,
    Message,
    check_body,
    check_group,
    check_metadata,
    check_topic,
)

__all__ = ["MemoryBroker", "MemorySubscription"]


class MemorySubscription:
    """A subscription held by a :class:`MemoryBroker`: a bounded buffer of messages."""

    __slots__ = ("_broker", "_closed", "_dropped", "_items", "_waiter", "buffer", "group", "topic")

    def __init__(self, broker: MemoryBroker, topic: str, group: str | None, buffer: int) -> None:
        self._broker = broker
        self.topic = topic
        self.group = group
        self.buffer = buffer
        self._items: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Messages lost because the buffer was full."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Messages waiting in the buffer."""
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True once closed; a closed subscription receives nothing more."""
        return self._closed

    def offer(self, message: Message) -> bool:
        """Buffer ``message`` if there is room; False (nothing counted) when full."""
        if len(self._items) >= self.buffer:
            return False
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def count_drop(self) -> None:
        """Count one message lost to a full buffer."""
        self._dropped += 1

    def __aiter__(self) -> MemorySubscription:
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

    def end(self) -> None:
        """Mark closed, drop unread messages and wake a waiting reader (no unsubscribe)."""
        self._closed = True
        self._items.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        """Unsubscribe and drop unread messages."""
        if not self._closed:
            self.end()
            self._broker._remove(self)

    def __repr__(self) -> str:
        return (
            f"MemorySubscription(topic={self.topic!r}, group={self.group!r}, "
            f"pending={len(self._items)}, dropped={self._dropped}, closed={self._closed})"
        )


class _Group:
    """The members of one queue group on one topic; ``turn`` is the next member to try."""

    __slots__ = ("members", "turn")

    def __init__(self) -> None:
        self.members: list[MemorySubscription] = []
        self.turn = 0

    def deliver(self, message: Message) -> None:
        members = self.members
        count = len(members)
        start = self.turn % count
        for step in range(count):
            index = (start + step) % count
            if members[index].offer(message):
                self.turn = index + 1
                return
        members[start].count_drop()  # every member is full: lost on the one whose turn it was
        self.turn = start + 1


class _Topic:
    __slots__ = ("groups", "ungrouped")

    def __init__(self) -> None:
        self.ungrouped: list[MemorySubscription] = []
        self.groups: dict[str, _Group] = {}

    def empty(self) -> bool:
        return not self.ungrouped and not self.groups


class MemoryBroker:
    """Topics and subscriptions held in memory.

    ``buffer`` is how many unread messages each subscription holds before it drops new ones;
    ``max_body`` the largest body accepted (bytes); ``clock`` stamps messages.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        buffer: int = DEFAULT_BUFFER,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        if max_body < 0:
            raise ValueError(f"max_body must not be negative, got {max_body}")
        self._clock = clock
        self.buffer = buffer
        self.max_body = max_body
        self._topics: dict[str, _Topic] = {}
        self._prefix = os.urandom(6).hex()
        self._sequence = itertools.count(1)
        self._closed = False

    async def publish(self, topic: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
        """Deliver to the current subscribers of ``topic``; return the message id."""
        if self._closed:
            raise unavailable("broker", "the broker is closed")
        check_topic(topic)
        body = check_body(body, self.max_body)
        meta = check_metadata(metadata)
        message_id = f"{self._prefix}-{next(self._sequence)}"
        entry = self._topics.get(topic)
        if entry is None:
            return message_id
        message = Message(topic, body, meta, message_id, self._clock())
        for sub in entry.ungrouped:
            if not sub.offer(message):
                sub.count_drop()
        for group in entry.groups.values():
            group.deliver(message)
        return message_id

    async def subscribe(self, topic: str, group: str | None = None) -> MemorySubscription:
        """A live subscription to ``topic`` (in queue ``group`` when given)."""
        if self._closed:
            raise unavailable("broker", "the broker is closed")
        check_topic(topic)
        check_group(group)
        sub = MemorySubscription(self, topic, group, self.buffer)
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = _Topic()
        if group is None:
            entry.ungrouped.append(sub)
        else:
            members = entry.groups.get(group)
            if members is None:
                members = entry.groups[group] = _Group()
            members.members.append(sub)
        return sub

    def _remove(self, sub: MemorySubscription) -> None:
        entry = self._topics.get(sub.topic)
        if entry is None:
            return
        if sub.group is None:
            if sub in entry.ungrouped:
                entry.ungrouped.remove(sub)
        else:
            members = entry.groups.get(sub.group)
            if members is not None and sub in members.members:
                index = members.members.index(sub)
                del members.members[index]
                if index < members.turn:
                    members.turn -= 1  # keep the rotation where it was
                if not members.members:
                    del entry.groups[sub.group]
        if entry.empty():
            del self._topics[sub.topic]

    def subscriber_count(self, topic: str | None = None) -> int:
        """Live subscriptions on ``topic``, or on every topic."""
        entries = self._topics.values() if topic is None else [self._topics.get(topic)]
        return sum(
            len(e.ungrouped) + sum(len(g.members) for g in e.groups.values())
            for e in entries
            if e is not None
        )

    def topics(self) -> list[str]:
        """Topics with at least one live subscription, sorted."""
        return sorted(self._topics)

    async def close(self) -> None:
        """End every subscription; later publishes and subscribes are ``unavailable``."""
        self._closed = True
        topics, self._topics = self._topics, {}
        for entry in topics.values():
            for sub in entry.ungrouped:
                sub.end()
            for group in entry.groups.values():
                for sub in group.members:
                    sub.end()
