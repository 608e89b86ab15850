"""The in-process consumer of the memory and SQLite backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ..errors import bad_request
from . import Event
from ._group import Group
from ._group_parts import Ticket
from ._options import ConsumeOptions, check_delay, check_fetch

__all__ = ["LocalConsumer"]


class _Engine(Protocol):
    clock: Callable[[], float]
    poll_interval: float

    def forget(self, consumer: LocalConsumer) -> None: ...


class LocalConsumer:
    """A member of a consumer group, served by the engine in this process.

    A fetch takes events under the group's lock; with none deliverable it waits in line
    until the group is woken (a publish, an ack, a release) or the next timer is due, and
    at least every ``poll_interval`` real seconds re-reads the clock. Only the first member
    in line that is not full takes (a fetch that has not waited yet may take at once), and
    it leaves the line when it returns, so members share a group's events in turn. Events a
    cancelled fetch had already taken are returned by the next one.
    """

    def __init__(self, engine: _Engine, group: Group, options: ConsumeOptions) -> None:
        self.topic = options.topic
        self.group = options.group
        self.options = options
        self.held: dict[int, int] = {}
        self.closed = False
        self._engine = engine
        self._group = group
        self._buffer: list[Event] = []

    def __aiter__(self) -> LocalConsumer:
        return self

    async def __anext__(self) -> Event:
        events = await self.fetch(1)
        if not events:
            raise StopAsyncIteration
        return events[0]

    async def fetch(self, max_events: int = 100, timeout: float | None = None) -> list[Event]:
        """Up to ``max_events`` events, waiting up to ``timeout`` seconds for the first."""
        check_fetch(max_events, timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        group = self._group
        clock = self._engine.clock
        ticket: Ticket | None = None  # our place in line while we wait
        try:
            while not self.closed:
                if not self._buffer and _turn(ticket, group.waiters):
                    async with group.lock:
                        if self.closed:
                            break
                        await group.take(self, max_events, clock(), self._buffer)
                if self._buffer:
                    out = self._buffer[:max_events]
                    del self._buffer[:max_events]
                    return out
                wait = self._engine.poll_interval
                due = group.next_due()
                if due is not None:
                    wait = min(wait, max(0.001, due - clock()))
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                if ticket is None:
                    ticket = Ticket(loop.create_future(), self)
                    group.waiters.append(ticket)
                elif ticket.future.done():
                    ticket.future = loop.create_future()
                await asyncio.wait((ticket.future,), timeout=wait)
        finally:
            if ticket is not None:
                ticket.future.cancel()
                group.waiters.remove(ticket)
                group.wake_head()  # the next in line may find what we left
        return []

    async def ack(self, event: Event) -> None:
        """Mark ``event`` processed."""
        self._manual("ack")
        async with self._group.lock:
            await self._group.ack(self, event, self._engine.clock())

    async def nack(self, event: Event, delay: float = 0.0) -> None:
        """Give ``event`` back for redelivery after ``delay`` seconds."""
        self._manual("nack")
        delay = check_delay(delay)
        async with self._group.lock:
            await self._group.nack(self, event, delay, self._engine.clock())

    async def give_back(self, event: Event) -> None:
        """Return ``event`` unseen: it is delivered again without counting this delivery
        (the RPC service uses it for events that never left its client's buffer)."""
        self._manual("give back")
        async with self._group.lock:
            await self._group.give_back(self, event, self._engine.clock())

    def _manual(self, what: str) -> None:
        if self.options.auto_ack:
            raise bad_request("events", f"cannot {what}: this consumer acks automatically")

    async def close(self) -> None:
        """Leave the group; held events are delivered again at once."""
        if self.closed:
            return
        self.closed = True
        self._group.wake()
        self._buffer.clear()
        async with self._group.lock:
            await self._group.release(self, self._engine.clock())
        self._engine.forget(self)

    def shutdown(self) -> None:
        """The engine is closing: stop, leaving held events as persisted."""
        self.closed = True
        self._group.wake()

    async def __aenter__(self) -> LocalConsumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _turn(ticket: Ticket | None, line: list[Ticket]) -> bool:
    """Whether a member may take events now: on its first try, or when every member ahead
    of it in line is full (holds its ``max_ack_pending``). Members that queued take in
    turn, whichever order their tasks wake in."""
    if ticket is None:
        return True
    for other in line:
        if other is ticket:
            return True
        if not other.full:
            return False
    return True
