"""The consumer of :class:`~micro.events.rpc.RpcEvents`: one ``Events.Consume`` stream."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..client import Client, Stream
from ..errors import MicroError, bad_request, internal, not_found, unavailable
from . import Event
from ._options import ID, ConsumeOptions, check_delay, check_fetch
from .messages import ConsumeIn, ConsumeOpen, ConsumeOut, Settle

__all__ = ["RpcConsumer"]


class RpcConsumer:
    """A group member whose events arrive over a stream from the ``events`` service.

    The server sends at most ``prefetch`` events ahead of what this consumer handed to its
    caller; each handed-out event gives one credit back. With ``auto_ack`` the consumer
    acks what it hands out, in batches sent with the credit (before it waits, and at
    least every ``prefetch / 2`` events). Manual acks and nacks travel on the same stream
    and wait for the server's answer, so their errors are raised here. Closing sends the
    pending acks, gives back the events that never left the buffer (not counted as
    deliveries) and ends the stream; the server releases what this member held unacked.
    """

    def __init__(
        self,
        client: Client,
        service: str,
        address: str,
        options: ConsumeOptions,
        prefetch: int,
        timeout: float,
        forget: Callable[[RpcConsumer], None] | None = None,
    ) -> None:
        self.topic = options.topic
        self.group = options.group
        self.options = options
        self.closed = False
        self._prefetch = prefetch
        self._timeout = timeout
        self._stream: Stream = client.stream(
            service, "Events.Consume", address=address, response_type=ConsumeOut
        )
        self._buffer: deque[Event] = deque()
        self._held: dict[int, int] = {}  # sequence -> deliveries, manual mode
        self._calls: dict[int, asyncio.Future[MicroError | None]] = {}
        self._last_id = 0
        self._returned = 0  # credit owed to the server
        self._to_ack: list[Settle] = []  # auto-ack: handed out, ack not sent yet
        self._arrived = asyncio.Event()
        self._ended = False
        self._error: MicroError | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._forget = forget

    async def open(self) -> None:
        """Join the group; raises what the server refused."""
        o = self.options
        start = o.start
        opening = ConsumeOpen(
            o.topic,
            o.group,
            start,
            o.auto_ack,
            o.ack_wait,
            o.max_deliver,
            o.dead_letter_topic,
            o.max_ack_pending,
        )
        try:
            await self._stream.send(ConsumeIn(open=opening, credit=self._prefetch))
            first = await asyncio.wait_for(self._stream.receive(), self._timeout)
        except StopAsyncIteration:
            raise internal(ID, "Events.Consume ended before the consumer joined") from None
        except TimeoutError:
            await self._stream.close()
            raise unavailable(ID, "Events.Consume did not answer in time") from None
        except BaseException:
            await self._stream.close()
            raise
        if not first.ready:
            await self._stream.close()
            raise internal(ID, "Events.Consume did not start with 'ready'")
        self._receiver = asyncio.ensure_future(self._receive())

    async def _receive(self) -> None:
        try:
            async for out in self._stream:
                if out.events:
                    self._buffer.extend(out.events)
                    self._arrived.set()
                if out.id:
                    call = self._calls.pop(out.id, None)
                    if call is not None and not call.done():
                        error = None if out.error is None else MicroError.from_wire(out.error)
                        call.set_result(error)
        except MicroError as err:
            self._error = err
        except Exception as exc:
            self._error = unavailable(ID, f"the consume stream broke: {exc}")
        finally:
            self._ended = True
            self._arrived.set()
            lost = self._error or unavailable(ID, "the consume stream ended")
            for call in self._calls.values():
                if not call.done():
                    call.set_result(lost)
            self._calls.clear()

    def __aiter__(self) -> RpcConsumer:
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
        while not self._buffer:
            if self.closed:
                return []
            if self._ended:
                if self._error is not None:
                    raise self._error
                return []
            await self._flush()
            self._arrived.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return []
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return []
        count = min(max_events, len(self._buffer))
        out = [self._buffer.popleft() for _ in range(count)]
        if self.options.auto_ack:
            self._to_ack += [Settle(e.sequence, e.deliveries) for e in out]
        else:
            for event in out:
                self._held[event.sequence] = event.deliveries
        self._returned += count
        if self._returned * 2 >= self._prefetch:
            await self._flush()
        return out

    async def _flush(self, release: list[Settle] | None = None) -> None:
        """Send owed credit, pending auto-acks and ``release`` (no answer awaited)."""
        if self._ended or not (self._returned or self._to_ack or release):
            return
        credit, self._returned = self._returned, 0
        acks, self._to_ack = self._to_ack, []
        await self._stream.send(ConsumeIn(credit=credit, ack=acks, release=release or []))

    async def ack(self, event: Event) -> None:
        """Mark ``event`` processed; waits for the server's answer."""
        await self._settle(event, False, 0.0)

    async def nack(self, event: Event, delay: float = 0.0) -> None:
        """Give ``event`` back for redelivery after ``delay`` seconds."""
        await self._settle(event, True, check_delay(delay))

    async def _settle(self, event: Event, nack: bool, delay: float) -> None:
        what = "nack" if nack else "ack"
        if self.options.auto_ack:
            raise bad_request(ID, f"cannot {what}: this consumer acks automatically")
        if event.topic != self.topic:
            raise bad_request(
                ID,
                f"event of topic {event.topic!r} cannot be settled by a consumer of {self.topic!r}",
            )
        if self._held.get(event.sequence) != event.deliveries:
            raise not_found(
                ID,
                f"event {event.sequence} of {event.topic!r} (delivery {event.deliveries}) "
                "is not in flight at this consumer: settled already, or never received here",
            )
        if self._ended or self.closed:
            raise self._error or unavailable(ID, "the consumer is closed")
        del self._held[event.sequence]
        self._last_id += 1
        call_id = self._last_id
        call: asyncio.Future[MicroError | None] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = call
        settle = [Settle(event.sequence, event.deliveries, delay)]
        credit, self._returned = self._returned, 0
        if nack:
            message = ConsumeIn(credit=credit, id=call_id, nack=settle)
        else:
            message = ConsumeIn(credit=credit, id=call_id, ack=settle)
        try:
            await self._stream.send(message)
            error = await asyncio.wait_for(asyncio.shield(call), self._timeout)
        except TimeoutError:
            raise unavailable(ID, f"no answer to the {what} in time") from None
        finally:
            self._calls.pop(call_id, None)
        if error is not None:
            raise error

    async def close(self) -> None:
        """End the stream; the server releases what this member held."""
        if self.closed:
            return
        self.closed = True
        self._arrived.set()
        if self._forget is not None:
            self._forget(self)
        try:
            unseen = [Settle(e.sequence, e.deliveries) for e in self._buffer]
            self._buffer.clear()
            await self._flush(unseen)
            if not self._ended:
                await self._stream.close_send()
            if self._receiver is not None:
                await asyncio.wait_for(asyncio.shield(self._receiver), self._timeout)
        except (MicroError, TimeoutError, OSError):
            pass
        finally:
            await self._stream.close()
            if self._receiver is not None and not self._receiver.done():
                self._receiver.cancel()
                await asyncio.gather(self._receiver, return_exceptions=True)

    async def __aenter__(self) -> RpcConsumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
