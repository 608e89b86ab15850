"""Retention of :mod:`micro.events.nats`: limits kept in stream metadata, applied by purge.

JetStream's own ``max_age`` runs on the server clock and ``max_bytes`` counts headers and
subjects; the events contract counts body bytes and reads the backend ``clock``, so the
limits live in the stream's metadata and :meth:`RetentionMixin.purge` cuts the stream's
prefix with ``purge_stream(seq=...)``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js import api
from nats.js.client import JetStreamContext

from ..errors import MicroError, unavailable
from . import Retention, TopicInfo
from ._nats_log import TOPIC_KEY, StreamNames, TopicCache, load, seq_at, through_before
from ._options import ID, Options, check_name, check_retention

__all__ = ["RetentionMixin"]

_log = logging.getLogger(__name__)
_AGE, _EVENTS, _BYTES = "micro.max_age", "micro.max_events", "micro.max_bytes"


class RetentionMixin(abc.ABC):
    """``retention``, ``purge`` and the background purge of :class:`NatsEvents`."""

    options: Options
    names: StreamNames
    _clock: Callable[[], float]

    @abc.abstractmethod
    async def _jetstream(self) -> JetStreamContext: ...

    @abc.abstractmethod
    async def _topic(self, topic: str, *, create: bool) -> TopicCache: ...

    @abc.abstractmethod
    async def _info(
        self, topic: str, stream: str, state: api.StreamState, meta: dict[str, str]
    ) -> TopicInfo: ...

    def _retention_of(self, meta: dict[str, str]) -> Retention:
        if not any(k in meta for k in (_AGE, _EVENTS, _BYTES)):
            return self.options.retention
        age, count, size = meta.get(_AGE), meta.get(_EVENTS), meta.get(_BYTES)
        return Retention(
            float(age) if age else None, int(count) if count else None, int(size) if size else None
        )

    async def retention(
        self,
        topic: str,
        *,
        max_age: float | None = None,
        max_events: int | None = None,
        max_bytes: int | None = None,
    ) -> TopicInfo:
        """Set ``topic``'s retention (kept in its stream's metadata)."""
        check_name(topic, "topic")
        limits = Retention(max_age, max_events, max_bytes)
        check_retention(limits)
        cache = await self._topic(topic, create=True)
        js = await self._jetstream()
        try:
            info = await js.stream_info(cache.stream)
            meta = {TOPIC_KEY: topic}
            meta.update({_AGE: "", _EVENTS: "", _BYTES: ""})  # set: no backend default
            if max_age is not None:
                meta[_AGE] = repr(float(max_age))
            if max_events is not None:
                meta[_EVENTS] = str(max_events)
            if max_bytes is not None:
                meta[_BYTES] = str(max_bytes)
            config = info.config
            config.metadata = meta
            info = await js.update_stream(config)
            return await self._info(topic, cache.stream, info.state, meta)
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream stream update failed: {exc}") from exc

    async def purge(self) -> int:
        """Apply every topic's retention now; return how many events were removed."""
        js = await self._jetstream()
        removed = 0
        try:
            for info in await js.streams_info():
                meta = info.config.metadata or {}
                if TOPIC_KEY not in meta or info.config.name is None:
                    continue
                removed += await self._purge_stream(js, info.config.name, info.state, meta)
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream purge failed: {exc}") from exc
        return removed

    async def _purge_stream(
        self, js: JetStreamContext, stream: str, state: api.StreamState, meta: dict[str, str]
    ) -> int:
        limits = self._retention_of(meta)
        first, last = state.first_seq, state.last_seq
        if not state.messages:
            return 0
        keep = first
        if limits.max_events is not None:
            keep = max(keep, last - limits.max_events + 1)
        if limits.max_age is not None:
            cutoff = self._clock() - limits.max_age
            keep = max(keep, await seq_at(js._jsm, stream, first, last, cutoff))
        if limits.max_bytes is not None:
            keep = max(keep, await _bytes_keep(js, stream, first, last, limits.max_bytes))
        if keep <= first:
            return 0
        await js.purge_stream(stream, seq=keep)
        after = (await js.stream_info(stream)).state
        return max(0, state.messages - after.messages)

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.purge_interval)
            try:
                await self.purge()
            except MicroError as exc:
                _log.warning("events retention purge failed: %s", exc.detail)


async def _bytes_keep(js: JetStreamContext, stream: str, first: int, last: int, limit: int) -> int:
    """The lowest sequence from which the bodies through ``last`` fit in ``limit`` bytes."""
    top = await load(js._jsm, stream, last)
    total = top.through if top else 0
    lo, hi = first, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if total - await through_before(js._jsm, stream, mid) <= limit:
            hi = mid
        else:
            lo = mid + 1
    return lo
