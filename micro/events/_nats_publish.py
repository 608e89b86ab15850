"""Publishing of :mod:`micro.events.nats`: one topic's publishes, in call order, in batches.

A :class:`TopicPublisher` queues the publishes of one topic in the order they are called and
sends them, while the previous send is waiting for JetStream, as one *atomic batch*
(ADR-50, nats-server 2.12+, the stream has ``allow_atomic``): JetStream stores the whole
batch or none of it, checks ``Nats-Expected-Last-Sequence`` of its first message against the
stream's tail when the batch commits, and answers the commit, once the batch is stored (on
disk with ``sync_interval: always``), with the sequence of its last message. So:

- every envelope of a batch is built on the tail the publisher knows (timestamp never going
  backwards, the running sum of body sizes), and a batch that another process got ahead of
  is rejected whole (``wrong last sequence``): the publisher re-reads the tail and sends it
  again, rebuilt;
- the stream order is the call order within the process, so two publishes with the same
  key are stored, acknowledged and delivered in call order;
- an acknowledged publish is stored and synced, as with one message per request;
- a batch holding a ``Nats-Msg-Id`` that JetStream has seen (or one id twice) is rejected
  whole; its publishes are then sent one at a time, each with its de-duplication result
  (as is a batch rejected for any other reason, such as the server's limit of batches in
  flight per stream).

Only one batch per topic is in flight in the process: the next one needs the tail the
previous one produced. On a server or stream without atomic batches the publishes go one
per request, still in call order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from ..errors import MicroError, unavailable
from . import Ack
from ._nats_log import Envelope, TopicCache, encode
from ._options import ID

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "Publish", "TopicPublisher"]

_log = logging.getLogger(__name__)

MAX_BATCH = 256
"""Most publishes in one atomic batch (JetStream allows 1000)."""

MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Most body bytes in one atomic batch (a larger single body still goes alone)."""

MAX_TRIES = 20
"""How often a send is rebuilt after another process appended to the topic first."""

_EXPECTED_STREAM = "Nats-Expected-Stream"
_EXPECTED_LAST = "Nats-Expected-Last-Sequence"
_MSG_ID = "Nats-Msg-Id"
_WRONG_LAST_SEQUENCE = 10071
_ATOMIC_DISABLED = 10174


@dataclass
class Publish:
    """One queued publish and the future its caller waits on."""

    body: bytes
    metadata: dict[str, str]
    key: str | None
    message_id: str | None
    deliver_at: float | None
    done: asyncio.Future[Ack] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _ApiError(msgspec.Struct):
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish (or to the commit of a batch)."""

    seq: int = 0
    duplicate: bool = False
    count: int = 0
    error: _ApiError | None = None


_pub_ack = msgspec.json.Decoder(_PubAck)


class _Rejected(Exception):
    """JetStream answered a send with an API error."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code


class TopicPublisher:
    """The publish queue of one topic in one :class:`~micro.events.nats.NatsEvents`.

    ``tail`` returns the topic's cache (loading it when it was dropped), ``forget`` drops it
    (the next ``tail`` re-reads the stream), ``connection`` returns the NATS client.
    """

    def __init__(
        self,
        topic: str,
        *,
        tail: Callable[[], Awaitable[TopicCache]],
        forget: Callable[[], None],
        connection: Callable[[], Awaitable[NatsClient]],
        clock: Callable[[], float],
        timeout: float,
    ) -> None:
        self.topic = topic
        self._tail = tail
        self._forget = forget
        self._connection = connection
        self._clock = clock
        self._timeout = timeout
        self._queue: deque[Publish] = deque()
        self._sender: asyncio.Task[None] | None = None

    def submit(self, item: Publish) -> asyncio.Future[Ack]:
        """Queue ``item`` behind every publish submitted before it; its future resolves
        with the :class:`Ack` (or a :class:`MicroError`)."""
        self._queue.append(item)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_all())
        return item.done

    async def close(self) -> None:
        """Stop sending; queued publishes fail with ``unavailable``."""
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            try:
                await sender
            except asyncio.CancelledError:
                pass
        _fail(list(self._queue), unavailable(ID, "the events backend is closed"))
        self._queue.clear()

    async def _send_all(self) -> None:
        while self._queue:
            batch = self._next_batch()
            if not batch:
                continue
            try:
                await self._send(batch)
            except MicroError as exc:
                _fail(batch, exc)
            except asyncio.CancelledError:
                _fail(batch, unavailable(ID, "the events backend is closed"))
                raise
            except Exception as exc:  # never leave a caller waiting for ever
                _fail(batch, unavailable(ID, f"JetStream publish failed: {exc}"))

    def _next_batch(self) -> list[Publish]:
        batch: list[Publish] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH:
            item = self._queue[0]
            if item.done.done():  # its caller gave up before it was sent
                self._queue.popleft()
                continue
            if batch and size + len(item.body) > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
            size += len(item.body)
        return batch

    async def _send(self, batch: list[Publish]) -> None:
        cache = await self._tail()
        if len(batch) > 1 and cache.atomic:
            for _ in range(MAX_TRIES):
                try:
                    await self._send_batch(cache, batch)
                    return
                except _Rejected as exc:
                    if exc.code == _WRONG_LAST_SEQUENCE:  # another process appended first
                        self._forget()
                        cache = await self._tail()
                        continue
                    if exc.code == _ATOMIC_DISABLED:
                        cache.atomic = False
                    # a known message id, or a batch limit: one at a time, each on its own
                    _log.debug("batch of %s rejected (%s): one at a time", self.topic, exc)
                break
            else:
                raise self._contended()
        for item in batch:  # one per request, each on its own
            try:
                await self._send_alone(item)
            except MicroError as exc:
                _fail([item], exc)

    async def _send_alone(self, item: Publish) -> None:
        for _ in range(MAX_TRIES):
            if item.done.done():
                return
            cache = await self._tail()
            try:
                await self._send_one(cache, item)
                return
            except _Rejected as exc:
                if exc.code != _WRONG_LAST_SEQUENCE:
                    raise unavailable(ID, f"JetStream publish failed: {exc}") from exc
                self._forget()  # another process appended first: re-read the tail
        raise self._contended()

    def _contended(self) -> MicroError:
        return unavailable(
            ID, f"topic {self.topic!r} is contended: publish gave up after {MAX_TRIES} tries"
        )

    def _envelopes(self, cache: TopicCache, batch: list[Publish]) -> tuple[list[bytes], float, int]:
        payloads = []
        ts, through = cache.last_ts, cache.through
        for item in batch:
            ts = max(self._clock(), ts)
            through += len(item.body)
            envelope = Envelope(ts, through, item.key, item.deliver_at, item.metadata, item.body)
            payloads.append(encode(envelope))
        return payloads, ts, through

    async def _send_one(self, cache: TopicCache, item: Publish) -> None:
        (payload,), ts, through = self._envelopes(cache, [item])
        headers = {
            _EXPECTED_STREAM: cache.stream,
            _EXPECTED_LAST: str(cache.last_seq),
        }
        if item.message_id is not None:
            headers[_MSG_ID] = item.message_id
        ack = await self._request(cache, payload, headers)
        seq = ack.seq
        if ack.duplicate:
            _resolve(item, Ack(self.topic, seq, True))
            return
        cache.last_seq, cache.last_ts, cache.through = seq, ts, through
        _resolve(item, Ack(self.topic, seq))

    async def _send_batch(self, cache: TopicCache, batch: list[Publish]) -> None:
        payloads, ts, through = self._envelopes(cache, batch)
        nc = await self._connection()
        batch_id = os.urandom(16).hex()
        last = len(payloads)
        try:
            for number, (item, payload) in enumerate(zip(batch, payloads, strict=True), 1):
                headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(number)}
                if number == 1:
                    headers[_EXPECTED_STREAM] = cache.stream
                    headers[_EXPECTED_LAST] = str(cache.last_seq)
                if item.message_id is not None:
                    headers[_MSG_ID] = item.message_id
                if number < last:
                    await nc.publish(cache.subject, payload, headers=headers)
                else:
                    headers["Nats-Batch-Commit"] = "1"
                    ack = await self._request(cache, payload, headers)
        except (NatsError, OSError) as exc:
            self._forget()  # the outcome is unknown: re-read the tail next time
            raise unavailable(ID, f"JetStream publish failed: {exc}") from exc
        seq = ack.seq
        if ack.count != last:
            self._forget()
            raise unavailable(ID, f"JetStream stored a batch of {ack.count}, not {last}")
        cache.last_seq, cache.last_ts, cache.through = seq, ts, through
        for offset, item in enumerate(batch):
            _resolve(item, Ack(self.topic, seq - last + 1 + offset))

    async def _request(self, cache: TopicCache, payload: bytes, headers: dict[str, str]) -> _PubAck:
        nc = await self._connection()
        try:
            reply = await nc.request(cache.subject, payload, timeout=self._timeout, headers=headers)
            answer = _pub_ack.decode(reply.data)
        except (NatsError, OSError, TimeoutError, msgspec.DecodeError) as exc:
            self._forget()  # the outcome is unknown: re-read the tail next time
            raise unavailable(ID, f"JetStream publish failed: {exc}") from exc
        if answer.error is not None:
            raise _Rejected(answer.error.err_code, answer.error.description)
        if answer.seq < 1:
            raise unavailable(ID, "JetStream answered a publish without a sequence")
        return answer


def _resolve(item: Publish, ack: Ack) -> None:
    if not item.done.done():
        item.done.set_result(ack)


def _fail(items: list[Publish], error: MicroError) -> None:
    for item in items:
        if not item.done.done():
            item.done.set_exception(error)
