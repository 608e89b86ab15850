"""The ``events`` RPC service: a thin layer over whichever events backend runs it."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator

from ..context import Context
from ..errors import MicroError, WireError, bad_request, not_found
from ..service.endpoint import idempotent
from . import Ack, Consumer, Event, Events, Start
from ._options import ID
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

__all__ = ["EventsHandler"]

_BATCH = 256  # most events per stream message
_REMEMBERED = 10_000  # deliveries remembered beyond max_ack_pending (see _Session.sent)


class EventsHandler:
    """Serves ``Events.Publish``, ``Read``, ``Topics``, ``Retention``, ``Purge`` and
    ``Consume`` (a bidirectional stream, see :mod:`micro.events.messages`). Reads are marked
    idempotent (safe to retry)."""

    def __init__(self, backend: Events) -> None:
        self._backend = backend

    async def publish(self, ctx: Context, req: PublishRequest) -> Ack:
        """Append an event; answer once it is durable."""
        return await self._backend.publish(
            req.topic,
            req.body,
            metadata=req.metadata,
            key=req.key,
            message_id=req.message_id,
            deliver_at=req.deliver_at,
        )

    @idempotent
    async def read(self, ctx: Context, req: ReadRequest) -> ReadResponse:
        """Stored events from a sequence or time."""
        start: Start = req.start  # type: ignore[assignment]  # validated by the backend
        return ReadResponse(await self._backend.read(req.topic, start=start, limit=req.limit))

    @idempotent
    async def topics(self, ctx: Context, req: Empty) -> TopicsResponse:
        """Every topic."""
        return TopicsResponse(await self._backend.topics())

    async def retention(self, ctx: Context, req: RetentionRequest) -> TopicsResponse:
        """Set a topic's retention; answer with the topic."""
        info = await self._backend.retention(
            req.topic, max_age=req.max_age, max_events=req.max_events, max_bytes=req.max_bytes
        )
        return TopicsResponse([info])

    async def purge(self, ctx: Context, req: Empty) -> PurgeResponse:
        """Apply retention now."""
        return PurgeResponse(await self._backend.purge())

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
        consumer = await self._backend.consume(
            opening.topic,
            opening.group,
            start=start,
            auto_ack=False,  # the client acks what it hands out (see messages)
            ack_wait=opening.ack_wait,
            max_deliver=opening.max_deliver,
            dead_letter_topic=opening.dead_letter_topic,
            max_ack_pending=opening.max_ack_pending,
        )
        session = _Session(consumer, first.credit, opening.max_ack_pending + _REMEMBERED)
        try:
            yield ConsumeOut(ready=True)
            async for out in session.run(req):
                yield out
        finally:
            await session.close()


class _Session:
    """One ``Events.Consume`` stream: a pump sending events while there is credit, and a
    reader applying the client's credit, acks and nacks; both feed one outbound queue."""

    def __init__(self, consumer: Consumer, credit: int, remember: int) -> None:
        self.consumer = consumer
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
                ID, f"event {settle.sequence} (delivery {settle.deliveries}) is not in flight "
                "at this consumer"
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
