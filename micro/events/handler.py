"""The ``events`` RPC service: a thin layer over whichever events backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), topics are namespaced transparently:
for a caller confined to namespace ``N`` other than ``micro``, topic ``t`` is stored as
``f"{N}--{t}"`` (:data:`TOPIC_SEP`) and every topic in answers and events (``topic``, a
dead-lettered event's ``dead_letter.topic``, ``TopicInfo.name``, names in error details) is
shown without the prefix; ``Topics`` lists only the caller's topics and ``Purge`` counts only
the events removed from them. Topics of ``micro`` are stored unprefixed (callers of
``micro`` see only unprefixed topics). The default dead-letter topic ``f"{t}.dead"`` is
therefore ``f"{N}--{t}.dead"``, inside the namespace too. Since topic names may use every
character of ``[A-Za-z0-9_.-]``, a confined caller's topic (and dead-letter topic) may not
contain ``--`` nor begin with ``-``: that keeps the stored names of different namespaces
apart. Unrestricted callers (admins of ``micro``) and handlers with ``tenancy`` off see every
topic as stored.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

import msgspec

from ..auth.tenancy import NAME_SEP, Names, caller_namespace
from ..context import Context
from ..errors import MicroError, WireError, bad_request, not_found
from ..service.endpoint import idempotent
from . import Ack, Consumer, Event, Events, Start, TopicInfo
from ._options import ID, check_name
from .messages import (
    ConsumeIn,
    ConsumeOut,
    Empty,
    PublishRequest,
    PurgeResponse,
    ReadRequest,
    ReadResponse,
    RetentionRequest,
    Settle,
    TopicsResponse,
)

__all__ = ["TOPIC_SEP", "EventsHandler"]

_BATCH = 256  # most events per stream message
_REMEMBERED = 10_000  # deliveries remembered beyond max_ack_pending (see _Session.sent)
_MAX_NAME = 255  # longest stored topic name (NAME_PATTERN)

TOPIC_SEP = NAME_SEP
"""Between the namespace and the topic in a stored topic name (see the module docstring and
:mod:`micro.auth.tenancy`, whose :class:`~micro.auth.tenancy.Names` implements the scheme)."""
_DEAD_LETTER_TOPIC = "dead_letter.topic"


class _Topics(Names):
    """How a caller confined to ``namespace`` names topics (the shared scheme of
    :class:`~micro.auth.tenancy.Names`), plus the events-specific mappings."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, ID, _MAX_NAME)

    def stored(self, name: str, what: str = "topic", *, room: int | None = None) -> str:
        check_name(name, what)
        return super().stored(name, what, room=room)

    def event(self, event: Event) -> Event:
        topic = self.show(event.topic)
        dead = event.metadata.get(_DEAD_LETTER_TOPIC)
        if dead is not None and (original := self.shown(dead)) is not None and original != dead:
            metadata = {**event.metadata, _DEAD_LETTER_TOPIC: original}
            return msgspec.structs.replace(event, topic=topic, metadata=metadata)
        return event if topic == event.topic else msgspec.structs.replace(event, topic=topic)

    def info(self, info: TopicInfo) -> TopicInfo:
        name = self.show(info.name)
        return info if name == info.name else msgspec.structs.replace(info, name=name)


class EventsHandler:
    """Serves ``Events.Publish``, ``Read``, ``Topics``, ``Retention``, ``Purge`` and
    ``Consume`` (a bidirectional stream, see :mod:`micro.events.messages`). Reads are marked
    idempotent (safe to retry). ``tenancy``: keep each caller's namespace apart."""

    def __init__(self, backend: Events, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _topics(self, ctx: Context) -> _Topics | None:
        """The caller's naming of topics; None: names as stored."""
        if not self.tenancy:
            return None
        namespace = caller_namespace(ctx)
        return None if namespace is None else _Topics(namespace)

    async def publish(self, ctx: Context, req: PublishRequest) -> Ack:
        """Append an event; answer once it is durable."""
        names = self._topics(ctx)
        topic = req.topic if names is None else names.stored(req.topic)
        try:
            ack = await self._backend.publish(
                topic,
                req.body,
                metadata=req.metadata,
                key=req.key,
                message_id=req.message_id,
                deliver_at=req.deliver_at,
            )
        except MicroError as err:
            if names is None:
                raise
            raise names.error(err, {topic: req.topic}) from None
        return ack if names is None else msgspec.structs.replace(ack, topic=req.topic)

    @idempotent
    async def read(self, ctx: Context, req: ReadRequest) -> ReadResponse:
        """Stored events from a sequence or time."""
        start: Start = req.start  # type: ignore[assignment]  # validated by the backend
        names = self._topics(ctx)
        topic = req.topic if names is None else names.stored(req.topic)
        try:
            events = await self._backend.read(topic, start=start, limit=req.limit)
        except MicroError as err:
            if names is None:
                raise
            raise names.error(err, {topic: req.topic}) from None
        if names is not None:
            events = [names.event(e) for e in events]
        return ReadResponse(events)

    @idempotent
    async def topics(self, ctx: Context, req: Empty) -> TopicsResponse:
        """Every topic (with tenancy: the caller's namespace's)."""
        infos = await self._backend.topics()
        names = self._topics(ctx)
        if names is None:
            return TopicsResponse(infos)
        return TopicsResponse([names.info(i) for i in infos if names.shown(i.name) is not None])

    async def retention(self, ctx: Context, req: RetentionRequest) -> TopicsResponse:
        """Set a topic's retention; answer with the topic."""
        names = self._topics(ctx)
        topic = req.topic if names is None else names.stored(req.topic)
        try:
            info = await self._backend.retention(
                topic, max_age=req.max_age, max_events=req.max_events, max_bytes=req.max_bytes
            )
        except MicroError as err:
            if names is None:
                raise
            raise names.error(err, {topic: req.topic}) from None
        return TopicsResponse([info if names is None else names.info(info)])

    async def purge(self, ctx: Context, req: Empty) -> PurgeResponse:
        """Apply retention now (to every topic); answer how many events were removed (with
        tenancy: from the caller's topics, as their first sequence moved)."""
        names = self._topics(ctx)
        if names is None:
            return PurgeResponse(await self._backend.purge())
        before = {i.name: i.first_sequence for i in await self._backend.topics()}
        await self._backend.purge()
        removed = sum(
            max(0, i.first_sequence - before.get(i.name, i.first_sequence))
            for i in await self._backend.topics()
            if names.shown(i.name) is not None
        )
        return PurgeResponse(removed)

    async def consume(
        self, ctx: Context, req: AsyncIterator[ConsumeIn]
    ) -> AsyncIterator[ConsumeOut]:
        """Join a group and stream its events while the client gives credit; when the
        stream ends or breaks, the member leaves and what it held is delivered again."""
        try:
            first = await req.__anext__()
        except StopAsyncIteration:
            raise bad_request(ID, "Events.Consume needs an opening message") from None
        opening = first.open
        if opening is None:
            raise bad_request(ID, "the first message of Events.Consume must carry 'open'")
        start: Start = opening.start  # type: ignore[assignment]  # validated by the backend
        names = self._topics(ctx)
        topic, dead = opening.topic, opening.dead_letter_topic
        if names is not None:
            topic = names.stored(opening.topic)
            if dead:
                dead = names.stored(dead, "dead_letter_topic")
        try:
            consumer = await self._backend.consume(
                topic,
                opening.group,
                start=start,
                auto_ack=False,  # the client acks what it hands out (see messages)
                ack_wait=opening.ack_wait,
                max_deliver=opening.max_deliver,
                dead_letter_topic=dead,
                max_ack_pending=opening.max_ack_pending,
            )
        except MicroError as err:
            if names is None:
                raise
            shown = {topic: opening.topic, f"{topic}.dead": f"{opening.topic}.dead"}
            if dead and opening.dead_letter_topic:
                shown[dead] = opening.dead_letter_topic
            raise names.error(err, shown) from None
        show = None if names is None else names.event
        session = _Session(consumer, first.credit, opening.max_ack_pending + _REMEMBERED, show)
        try:
            yield ConsumeOut(ready=True)
            async for out in session.run(req):
                yield out
        finally:
            await session.close()


class _Session:
    """One ``Events.Consume`` stream: a pump sending events while there is credit, and a
    reader applying the client's credit, acks and nacks; both feed one outbound queue."""

    def __init__(
        self,
        consumer: Consumer,
        credit: int,
        remember: int,
        show: Callable[[Event], Event] | None = None,
    ) -> None:
        self.consumer = consumer
        self.show = show  # how the caller sees an event (tenancy: topic names unprefixed)
        self.credit = max(0, credit)
        self.more_credit = asyncio.Event()
        self.out: asyncio.Queue[ConsumeOut | None] = asyncio.Queue()
        # Deliveries sent, to turn (sequence, deliveries) back into events. Expired ones are
        # never settled; they are the oldest, so the oldest entries go beyond the bound.
        self.sent: OrderedDict[int, Event] = OrderedDict()
        self.remember = remember
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, req: AsyncIterator[ConsumeIn]) -> AsyncIterator[ConsumeOut]:
        """What to send, until the client ends the stream or the consumer closes."""
        self.tasks = [
            asyncio.ensure_future(self._read(req)),
            asyncio.ensure_future(self._pump()),
        ]
        while True:
            item = await self.out.get()
            if item is None:
                break
            yield item
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _read(self, req: AsyncIterator[ConsumeIn]) -> None:
        try:
            async for message in req:
                if message.credit > 0:
                    self.credit += message.credit
                    self.more_credit.set()
                errors = [await self._settle("ack", s) for s in message.ack]
                errors += [await self._settle("nack", s) for s in message.nack]
                errors += [await self._settle("release", s) for s in message.release]
                error = next((e for e in errors if e is not None), None)
                if message.id:
                    self.out.put_nowait(ConsumeOut(id=message.id, error=error))
        finally:
            self.out.put_nowait(None)

    async def _settle(self, kind: str, settle: Settle) -> WireError | None:
        """Apply one settlement; its error, if any (each is applied on its own)."""
        try:
            event = self._event(settle)
            if kind == "ack":
                await self.consumer.ack(event)
            elif kind == "nack":
                await self.consumer.nack(event, settle.delay)
            else:
                give_back = getattr(self.consumer, "give_back", None)  # LocalConsumer has it
                await (give_back(event) if give_back is not None else self.consumer.nack(event))
        except MicroError as err:
            return err.to_wire()
        return None

    def _event(self, settle: Settle) -> Event:
        event = self.sent.pop(settle.sequence, None)
        if event is None or event.deliveries != settle.deliveries:
            raise not_found(
                ID,
                f"event {settle.sequence} (delivery {settle.deliveries}) is not in flight "
                "at this consumer",
            )
        return event

    async def _pump(self) -> None:
        try:
            while True:
                while self.credit <= 0:
                    self.more_credit.clear()
                    await self.more_credit.wait()
                events = await self.consumer.fetch(min(self.credit, _BATCH))
                if not events:
                    return  # the consumer closed
                self.credit -= len(events)
                for event in events:
                    self.sent.pop(event.sequence, None)
                    self.sent[event.sequence] = event
                while len(self.sent) > self.remember:
                    self.sent.popitem(last=False)
                if self.show is not None:
                    events = [self.show(e) for e in events]
                self.out.put_nowait(ConsumeOut(events=events))
        finally:
            self.out.put_nowait(None)

    async def close(self) -> None:
        """Stop both tasks, then leave the group."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        for task in self.tasks:  # a failure was raised by run() already, or is moot now
            if not task.cancelled():
                task.exception()
        await self.consumer.close()
