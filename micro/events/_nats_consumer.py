"""Consumer groups of :mod:`micro.events.nats`: durable pull consumers plus a per-process key
gate.

Each member pulls from the group's durable JetStream consumer as many messages per request
as its ``fetch`` asks for (at most :data:`MAX_PULL`); any beyond what it returns go to the
group's ready queue for the next ``fetch`` of any member. JetStream gives each message to
one member at a time, redelivers after ``ack_wait`` or a nak, and stops at ``max_deliver``.
Per-key order is kept here, in the process: the members of one group that share a
:class:`~micro.events.nats.NatsEvents` share a :class:`Group` that remembers, per key, which
sequences it has received and not finished; only the lowest one is handed out, later ones
are held (kept alive with ``in_progress``) until it is acked or dead-lettered.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout

from ..errors import bad_request, not_found, unavailable
from . import Event
from ._nats_log import decode, to_event
from ._options import ID, ConsumeOptions, check_delay, check_fetch

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = ["MAX_PULL", "Group", "NatsConsumer"]

MAX_PULL = 256
"""Most messages one pull request asks JetStream for (``fetch`` asks for what it returns)."""

DeadLetter = Callable[[ConsumeOptions, int, Msg | None, int], Awaitable[None]]


class Group:
    """What the members of one group in this process share."""

    def __init__(self, options: ConsumeOptions, clock: Callable[[], float], dead: DeadLetter):
        self.options = options
        self.clock = clock
        self.dead = dead
        self.members: set[NatsConsumer] = set()
        self.owned: dict[str, list[int]] = {}  # key -> received, unfinished sequences
        self.held: dict[int, Msg] = {}
        self.inflight: dict[int, tuple[NatsConsumer, Msg, int]] = {}
        self.ready: deque[Msg] = deque()
        self.wake: asyncio.Event = asyncio.Event()
        self.ticker: asyncio.Task[None] | None = None

    def take(self, member: NatsConsumer, msg: Msg) -> Event | None:
        """The event to hand out for ``msg``, or None when it is delayed or held."""
        env = decode(msg.data)
        seq, deliveries = msg.metadata.sequence.stream, msg.metadata.num_delivered
        now = self.clock()
        if env.deliver_at is not None and env.deliver_at > now:
            _background(_quietly(msg.nak(delay=env.deliver_at - now)))
            return None
        if env.key is not None:
            seqs = self.owned.setdefault(env.key, [])
            if seq not in seqs:
                bisect.insort(seqs, seq)
            if seqs[0] != seq:
                self.held[seq] = msg
                self.keep_alive()
                return None
        self.held.pop(seq, None)
        self.inflight[seq] = (member, msg, deliveries)
        if self.options.auto_ack:
            _background(_quietly(msg.ack()))
            self.finish(seq, env.key)
        return to_event(self.options.topic, seq, env, deliveries)

    def finish(self, seq: int, key: str | None) -> None:
        """``seq`` is done (acked, dead-lettered): release its key to the next held one."""
        self.inflight.pop(seq, None)
        self.held.pop(seq, None)
        if key is None or key not in self.owned:
            return
        seqs = self.owned[key]
        if seq in seqs:
            seqs.remove(seq)
        if not seqs:
            del self.owned[key]
        elif seqs[0] in self.held:
            self.ready.append(self.held.pop(seqs[0]))
            self.wake.set()

    def keep_alive(self) -> None:
        """Keep what is held or ready from JetStream's ack wait (``in_progress``)."""
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.ensure_future(self._keep_held())

    async def _keep_held(self) -> None:
        interval = max(0.05, self.options.ack_wait / 3)
        while self.held or self.ready:
            for msg in [*self.held.values(), *self.ready]:
                await _quietly(msg.in_progress())
            await asyncio.sleep(interval)

    async def release_all(self) -> None:
        """The last member left: give back what is held so any process can take it."""
        for msg in [*self.held.values(), *self.ready]:
            await _quietly(msg.nak())
        self.held.clear()
        self.ready.clear()
        self.owned.clear()
        if self.ticker is not None:
            self.ticker.cancel()


class NatsConsumer:
    """A member of a consumer group on a JetStream durable pull consumer."""

    def __init__(self, group: Group, js: JetStreamContext, stream: str, durable: str) -> None:
        self.group_state = group
        self.topic = group.options.topic
        self.group = group.options.group
        self._js = js
        self._stream = stream
        self._durable = durable
        self._psub: JetStreamContext.PullSubscription | None = None
        self._closed = asyncio.Event()

    async def _open(self) -> None:
        self._psub = await self._js.pull_subscribe_bind(durable=self._durable, stream=self._stream)

    def __aiter__(self) -> NatsConsumer:
        return self

    async def __anext__(self) -> Event:
        while True:
            events = await self.fetch(1)
            if events:
                return events[0]
            if self._closed.is_set():
                raise StopAsyncIteration

    async def fetch(self, max_events: int = 100, timeout: float | None = None) -> list[Event]:
        """Up to ``max_events`` events (at least one unless the timeout passes or it closes)."""
        check_fetch(max_events, timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        group = self.group_state
        out: list[Event] = []
        while not self._closed.is_set() and self._psub is not None:
            while group.ready and len(out) < max_events:
                event = group.take(self, group.ready.popleft())
                if event is not None:
                    out.append(event)
            if out:
                return out
            group.wake.clear()
            remaining = 5.0 if deadline is None else deadline - loop.time()
            if remaining <= 0:
                return out
            wanted = min(max_events - len(out), MAX_PULL)
            msgs = await self._pull(wanted, min(remaining, 5.0))
            for at, msg in enumerate(msgs):
                if len(out) >= max_events:  # more than asked for: any member takes them
                    group.ready.extend(msgs[at:])
                    group.keep_alive()
                    group.wake.set()
                    break
                event = group.take(self, msg)
                if event is not None:
                    out.append(event)
        return out

    async def _pull(self, batch: int, timeout: float) -> list[Msg]:
        assert self._psub is not None
        pull = asyncio.ensure_future(self._psub.fetch(batch, timeout=max(timeout, 0.01)))
        woken = asyncio.ensure_future(self.group_state.wake.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({pull, woken, closed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pull.add_done_callback(_give_back)  # a message the caller will not see goes back
            pull.cancel()
            raise
        finally:
            woken.cancel()
            closed.cancel()
        if not pull.done():
            pull.cancel()  # safe: a message that arrives later waits in the subscription
            with contextlib.suppress(asyncio.CancelledError, NatsError, TimeoutError):
                await pull
            return []
        try:
            return pull.result()
        except (NatsTimeout, TimeoutError):
            return []
        except NatsError as exc:
            raise unavailable(ID, f"JetStream fetch failed: {exc}") from exc

    def _mine(self, event: Event) -> tuple[Msg, int]:
        if not isinstance(event, Event):
            raise bad_request(ID, "event must be an Event")
        if event.topic != self.topic:
            raise bad_request(ID, f"event of topic {event.topic!r} is not from {self.topic!r}")
        if self.group_state.options.auto_ack:
            raise bad_request(ID, "this consumer acks automatically (auto_ack=True)")
        entry = self.group_state.inflight.get(event.sequence)
        if entry is None or entry[0] is not self or entry[2] != event.deliveries:
            raise not_found(ID, f"event {event.sequence} is not in flight for this consumer")
        return entry[1], entry[2]

    async def ack(self, event: Event) -> None:
        """Acknowledge ``event`` (manual mode)."""
        msg, _ = self._mine(event)
        await self._call(msg.ack_sync(timeout=5.0))
        self.group_state.finish(event.sequence, event.key)

    async def nack(self, event: Event, delay: float = 0.0) -> None:
        """Give ``event`` back after ``delay`` seconds; past ``max_deliver``, dead-letter it."""
        delay = check_delay(delay)
        msg, deliveries = self._mine(event)
        group = self.group_state
        if deliveries >= group.options.max_deliver:
            await group.dead(group.options, event.sequence, msg, deliveries)
            await self._call(msg.term())
            group.finish(event.sequence, event.key)
            return
        group.inflight.pop(event.sequence, None)
        await self._call(msg.nak(delay=delay or None))

    async def _call(self, call: Awaitable[object]) -> None:
        try:
            await call
        except NatsError as exc:
            raise unavailable(ID, f"JetStream ack failed: {exc}") from exc

    async def close(self) -> None:
        """Leave the group; what this member holds is given back at once."""
        if self._closed.is_set():
            return
        self._closed.set()
        group = self.group_state
        for seq, (member, msg, _) in list(group.inflight.items()):
            if member is self:
                del group.inflight[seq]
                await _quietly(msg.nak())
        psub, self._psub = self._psub, None
        if psub is not None:
            queue = psub._sub._pending_queue  # delivered to us but not fetched yet
            while not queue.empty():
                await _quietly(queue.get_nowait().nak())
            await _quietly(psub.unsubscribe())
        group.members.discard(self)
        if not group.members:
            await group.release_all()

    async def __aenter__(self) -> NatsConsumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_TASKS: set[asyncio.Future[None]] = set()


def _background(call: Awaitable[None]) -> None:
    """Run ``call`` without waiting for it (a reference is kept until it is done)."""
    task = asyncio.ensure_future(call)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _quietly(call: Awaitable[None]) -> None:
    with contextlib.suppress(NatsError, TimeoutError, asyncio.InvalidStateError):
        await call


def _give_back(pull: asyncio.Future[list[Msg]]) -> None:
    if pull.cancelled() or pull.exception() is not None:
        return
    for msg in pull.result():
        _background(_quietly(msg.nak()))
