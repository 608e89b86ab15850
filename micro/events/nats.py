"""Events on NATS JetStream (nats-py): a stream per topic, durable pull consumers per group.

**Server.** JetStream with file storage and ``sync_interval: always`` in the server's
``jetstream {}`` block. JetStream acknowledges a publish once it is in the OS page cache
and by default fsyncs every two minutes; Jepsen's 2025 analysis of NATS 2.12 showed the default
lost acknowledged writes on power loss or a killed node. With ``sync_interval: always``
an acknowledged publish is on disk.

**Layout.** Topic ``T`` is stream ``{stream_prefix}_{sha256(T)[:40]}`` on subject
``{subject_prefix}.{sha256(T)[:40]}`` (topic names may hold ``..``, which subjects and stream
names cannot), with the topic name in the stream's metadata. The stream sequence is the
event sequence. The payload is a msgpack envelope with the timestamp (from ``clock``, never
going backwards within the topic), the body, key, metadata, ``deliver_at`` and the running
sum of body sizes (for :attr:`~micro.events.TopicInfo.bytes`). Publishes to one topic are
queued in call order and sent as atomic batches (:mod:`micro.events._nats_publish`): while
one batch is in flight the next gathers. Each batch carries ``Nats-Expected-Last-Sequence``
so publishers in several processes take turns instead of breaking the timestamp order (a
batch another process got ahead of is rejected whole and rebuilt on the new tail).

**De-duplication.** ``message_id`` is ``Nats-Msg-Id``; the stream's ``duplicate_window`` is
``dedupe_window`` (server time, real seconds; it is fixed when the stream is created).

**Groups.** A group is a durable pull consumer (``ack_wait``, ``max_deliver``,
``max_ack_pending`` are JetStream's, in real seconds, ``max_ack_pending`` for the whole
group; the start position maps to a deliver policy, a time to a start sequence found by a
binary search over timestamps). ``nack(delay)`` is a nak with delay. A delivery that fails
for the ``max_deliver``-th time is dead-lettered: on nack by the member (then ``term``), on
ack-wait expiry by the ``MAX_DELIVERIES`` advisory that every process with a member of the
group listens to (the dead-letter publish carries a ``Nats-Msg-Id``, so several listeners
append it once). ``deliveries`` is JetStream's ``num_delivered``.

**Limits, stated.** Per-key order holds among the members of a group in one process (one
:class:`NatsEvents`), not between processes. ``deliver_at`` is honoured by the consumer,
which naks an early event with a delay until then; that costs one delivery, so such an event
shows ``deliveries`` one higher. ``fetch(n)`` asks JetStream for up to ``n`` messages (at
most 256) in one pull and returns what the first answer brings; iterating pulls one at a
time. An event dead-lettered by ack-wait expiry while no process
has a member of its group is not copied to the dead-letter topic. Retention (``max_age`` by
event timestamp and ``clock``, ``max_events``, ``max_bytes`` of bodies) is applied by
:meth:`NatsEvents.purge` and its background loop, not by JetStream limits.

Opens lazily on first use; :meth:`NatsEvents.close` closes consumers and the connection.
Connection loss is ``unavailable``; nats-py reconnects by itself, and a connection it gave up
on is replaced on the next call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription as NatsSub
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from ..errors import not_found, unavailable
from . import DEDUPE_WINDOW, MAX_BODY, Ack, Event, Retention, Start, TopicInfo
from ._nats_consumer import Group
from ._nats_groups import GroupsMixin
from ._nats_log import (
    TOPIC_KEY,
    StreamNames,
    TopicCache,
    load,
    load_events,
    seq_at,
    through_before,
)
from ._nats_publish import Publish, TopicPublisher
from ._nats_retention import RetentionMixin
from ._options import ID, ConsumeOptions, Options, check_limit, check_name, check_publish

__all__ = ["NatsEvents", "NatsEventsSettings"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NatsEventsSettings:
    """Validated settings of :class:`NatsEvents`."""

    servers: tuple[str, ...]
    stream_prefix: str = "MICRO_EVENTS"
    subject_prefix: str = "micro.events"
    name: str = "micro-events"
    timeout: float = 5.0
    replicas: int = 1

    def __post_init__(self) -> None:
        if not self.servers or not all(isinstance(s, str) and s for s in self.servers):
            raise ValueError("servers must be a non-empty list of NATS URLs")
        if not self.stream_prefix.replace("_", "").replace("-", "").isalnum():
            raise ValueError("stream_prefix must be letters, digits, '_' and '-'")
        if not all(
            t and t.replace("_", "").replace("-", "").isalnum()
            for t in self.subject_prefix.split(".")
        ):
            raise ValueError("subject_prefix must be '.'-separated tokens without wildcards")
        if not 0 < self.timeout <= 60 or not 1 <= self.replicas <= 5:
            raise ValueError("timeout must be in (0, 60] seconds and replicas in 1..5")


class NatsEvents(GroupsMixin, RetentionMixin):
    """An :class:`~micro.events.Events` backend on NATS JetStream (see the module doc)."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY,
        dedupe_window: float = DEDUPE_WINDOW,
        retention: Retention | None = None,
        purge_interval: float = 60.0,
        stream_prefix: str = "MICRO_EVENTS",
        subject_prefix: str = "micro.events",
        name: str = "micro-events",
        timeout: float = 5.0,
        replicas: int = 1,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        self.settings = NatsEventsSettings(
            tuple(servers), stream_prefix, subject_prefix, name, timeout, replicas
        )
        self.options = Options(
            max_body=max_body,
            dedupe_window=dedupe_window,
            retention=retention or Retention(),
            purge_interval=purge_interval,
        )
        self.names = StreamNames(stream_prefix, subject_prefix)
        self._clock = clock
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connecting = asyncio.Lock()
        self._topics: dict[str, TopicCache] = {}
        self._publishers: dict[str, TopicPublisher] = {}
        self._groups: dict[tuple[str, str], Group] = {}
        self._advisories: dict[tuple[str, str], NatsSub] = {}
        self._purger: asyncio.Task[None] | None = None
        self._closed = False

    # -- connection ------------------------------------------------------------------------

    async def _jetstream(self) -> JetStreamContext:
        if self._closed:
            raise unavailable(ID, "the events backend is closed")
        if self._nc is not None and not self._nc.is_closed and self._js is not None:
            return self._js
        async with self._connecting:
            if self._nc is None or self._nc.is_closed or self._js is None:
                s = self.settings
                self._nc = NatsClient()
                options: dict[str, Any] = {  # floats work; the stubs say int
                    "servers": list(s.servers),
                    "name": s.name,
                    "connect_timeout": s.timeout,
                    "max_reconnect_attempts": -1,  # once connected, reconnect for ever
                    "reconnect_time_wait": 0.2,
                    "drain_timeout": s.timeout,
                    "error_cb": _log_error,
                }
                try:  # the first connect is bounded: an unreachable server is unavailable
                    await asyncio.wait_for(self._nc.connect(**options), s.timeout * 2)
                except (NatsError, OSError, TimeoutError) as exc:
                    await _discard(self._nc)
                    self._nc = None
                    raise unavailable(ID, f"cannot connect to NATS at {list(s.servers)}") from exc
                self._js = self._nc.jetstream(timeout=s.timeout)
                self._topics.clear()
                self._advisories.clear()
            if self._purger is None:
                self._purger = asyncio.ensure_future(self._purge_loop())
            return self._js

    async def _topic(self, topic: str, *, create: bool) -> TopicCache:
        cache = self._topics.get(topic)
        if cache is not None:
            return cache
        js = await self._jetstream()
        stream, subject = self.names.stream(topic), self.names.subject(topic)
        try:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                if not create:
                    raise not_found(ID, f"topic {topic!r} does not exist") from None
                info = await js.add_stream(
                    name=stream,
                    subjects=[subject],
                    description=topic[:200],
                    storage=api.StorageType.FILE,
                    num_replicas=self.settings.replicas,
                    duplicate_window=self.options.dedupe_window or 0.001,
                    metadata={TOPIC_KEY: topic},
                    discard=api.DiscardPolicy.OLD,
                    allow_atomic=True,
                )
            if not info.config.allow_atomic:
                info = await self._allow_atomic(js, info)
            cache = TopicCache(stream, subject, info.state.last_seq)
            cache.atomic = bool(info.config.allow_atomic)
            env = await load(js._jsm, stream, cache.last_seq) if cache.last_seq else None
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream stream {stream}: {exc}") from exc
        if env is not None:
            cache.last_ts, cache.through = env.timestamp, env.through
        self._topics[topic] = cache
        return cache

    @staticmethod
    async def _allow_atomic(js: JetStreamContext, info: api.StreamInfo) -> api.StreamInfo:
        """Turn on atomic batches for a stream made without them (an older micro); a
        server that cannot is left as it is (publishes then go one per request)."""
        config = info.config
        config.allow_atomic = True
        try:
            return await js.update_stream(config)
        except APIError as exc:
            _log.info("stream %s keeps one publish per request: %s", config.name, exc)
            return info

    # -- publish and read ------------------------------------------------------------------

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
        """Append an event; return once JetStream acknowledged it (on disk with
        ``sync_interval: always``)."""
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        meta = {} if metadata is None else metadata
        check_publish(self.options, topic, body, meta, key, message_id, deliver_at)
        at = None if deliver_at is None else float(deliver_at)
        publisher = self._publishers.get(topic)
        if publisher is None:
            publisher = self._publishers[topic] = self._publisher(topic)
        return await publisher.submit(Publish(body, dict(meta), key, message_id, at))

    def _publisher(self, topic: str) -> TopicPublisher:
        async def tail() -> TopicCache:
            return await self._topic(topic, create=True)

        def forget() -> None:
            self._topics.pop(topic, None)

        async def connection() -> NatsClient:
            await self._jetstream()
            assert self._nc is not None
            return self._nc

        return TopicPublisher(
            topic,
            tail=tail,
            forget=forget,
            connection=connection,
            clock=self._clock,
            timeout=self.settings.timeout,
        )

    async def read(self, topic: str, *, start: Start = "first", limit: int = 100) -> list[Event]:
        """Up to ``limit`` stored events from ``start`` on."""
        check_name(topic, "topic")
        ConsumeOptions(topic, "read", start=start)  # validates start
        limit = check_limit(limit)
        cache = await self._topic(topic, create=False)
        js = await self._jetstream()
        try:
            state = (await js.stream_info(cache.stream)).state
            first = await self._start_seq(cache.stream, start, state.first_seq, state.last_seq)
            first = max(first, state.first_seq)
            last = min(state.last_seq, first + limit - 1)
            return await load_events(js._jsm, topic, cache.stream, first, last)
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream read failed: {exc}") from exc

    async def _start_seq(self, stream: str, start: Start, first: int, last: int) -> int:
        if start == "first":
            return first
        if start == "new":
            return last + 1
        if isinstance(start, int):
            return start
        js = await self._jetstream()
        return await seq_at(js._jsm, stream, first, last, float(start))

    # -- topics ----------------------------------------------------------------------------

    async def topics(self) -> list[TopicInfo]:
        """Every topic in this prefix, by name."""
        js = await self._jetstream()
        try:
            infos = await js.streams_info()
            out = []
            for info in infos:
                meta = info.config.metadata or {}
                name = info.config.name or ""
                if TOPIC_KEY in meta and name.startswith(self.settings.stream_prefix + "_"):
                    out.append(await self._info(meta[TOPIC_KEY], name, info.state, meta))
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream stream list failed: {exc}") from exc
        return sorted(out, key=lambda t: t.name)

    async def _info(
        self, topic: str, stream: str, state: api.StreamState, meta: dict[str, str]
    ) -> TopicInfo:
        js = await self._jetstream()
        size = 0
        if state.messages:
            last = await load(js._jsm, stream, state.last_seq)
            before = await through_before(js._jsm, stream, state.first_seq)
            size = (last.through if last else 0) - before
        return TopicInfo(
            topic, state.first_seq, state.last_seq, state.messages, size, self._retention_of(meta)
        )

    async def close(self) -> None:
        """Close every consumer, stop the purge loop and close the connection."""
        self._closed = True
        if self._purger is not None:
            self._purger.cancel()
        for state in list(self._groups.values()):
            for member in list(state.members):
                await member.close()
        self._groups.clear()
        for publisher in list(self._publishers.values()):
            await publisher.close()
        self._publishers.clear()
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (NatsError, TimeoutError):
                await nc.close()


async def _log_error(exc: Exception) -> None:
    _log.warning("NATS: %s", exc)


async def _discard(nc: NatsClient | None) -> None:
    """Close a client whose first connect failed (stops its connect attempts)."""
    if nc is not None:
        try:
            await nc.close()
        except (NatsError, OSError, TimeoutError):
            _log.debug("closing a failed NATS client", exc_info=True)
