"""Consumer groups of :mod:`micro.events.nats`: durable consumers, dead letters."""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ..errors import MicroError, unavailable
from . import Ack, Start
from ._nats_consumer import Group, NatsConsumer
from ._nats_log import StreamNames, TopicCache, decode, load
from ._options import ID, ConsumeOptions

__all__ = ["GroupsMixin"]

_log = logging.getLogger(__name__)


class GroupsMixin(abc.ABC):
    """``consume`` and dead-lettering of :class:`~micro.events.nats.NatsEvents`."""

    names: StreamNames
    _clock: Callable[[], float]
    _nc: NatsClient | None
    _groups: dict[tuple[str, str], Group]
    _advisories: dict[tuple[str, str], NatsSub]

    @abc.abstractmethod
    async def _jetstream(self) -> JetStreamContext: ...

    @abc.abstractmethod
    async def _topic(self, topic: str, *, create: bool) -> TopicCache: ...

    @abc.abstractmethod
    async def _start_seq(self, stream: str, start: Start, first: int, last: int) -> int: ...

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        key: str | None = None,
        message_id: str | None = None,
        deliver_at: float | None = None,
    ) -> Ack: ...

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        start: Start = "new",
        auto_ack: bool = True,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        dead_letter_topic: str | None = None,
        max_ack_pending: int = 1000,
    ) -> NatsConsumer:
        """Join ``group`` of ``topic``: a durable pull consumer created at ``start`` if new."""
        options = ConsumeOptions(
            topic,
            group,
            start,
            auto_ack,
            ack_wait,
            max_deliver,
            dead_letter_topic or "",
            max_ack_pending,
        )
        cache = await self._topic(topic, create=True)
        js = await self._jetstream()
        durable = self.names.durable(group)
        config = api.ConsumerConfig(
            durable_name=durable,
            description=group[:200],
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        )
        try:
            try:
                existing = (await js.consumer_info(cache.stream, durable)).config
                config.deliver_policy = existing.deliver_policy
                config.opt_start_seq = existing.opt_start_seq
            except NotFoundError:
                await self._position(config, cache.stream, start)
            await js.add_consumer(cache.stream, config)
            state = self._group(options)
            await self._listen(options, cache.stream, durable)
            member = NatsConsumer(state, js, cache.stream, durable)
            await member._open()
        except (NatsError, TimeoutError) as exc:
            raise unavailable(ID, f"JetStream consumer {durable}: {exc}") from exc
        state.members.add(member)
        return member

    async def _position(self, config: api.ConsumerConfig, stream: str, start: Start) -> None:
        if start == "first":
            config.deliver_policy = api.DeliverPolicy.ALL
        elif start == "new":
            config.deliver_policy = api.DeliverPolicy.NEW
        else:
            js = await self._jetstream()
            state = (await js.stream_info(stream)).state
            seq = await self._start_seq(stream, start, state.first_seq, state.last_seq)
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = seq

    def _group(self, options: ConsumeOptions) -> Group:
        state = self._groups.get((options.topic, options.group))
        if state is None or not state.members:
            state = Group(options, self._clock, self._dead_letter)
            self._groups[(options.topic, options.group)] = state
        state.options = options
        return state

    async def _listen(self, options: ConsumeOptions, stream: str, durable: str) -> None:
        if (stream, durable) in self._advisories:
            return
        assert self._nc is not None

        async def on_advisory(msg: Msg) -> None:
            try:
                info = json.loads(msg.data)
                seq, deliveries = int(info["stream_seq"]), int(info["deliveries"])
                state = self._groups.get((options.topic, options.group))
                await self._dead_letter(state.options if state else options, seq, None, deliveries)
                if state is not None:
                    env = await load((await self._jetstream())._jsm, stream, seq)
                    state.finish(seq, env.key if env else None)
            except (MicroError, NatsError, ValueError, KeyError, TimeoutError) as exc:
                _log.warning("dead-lettering from advisory failed: %s", exc)

        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}"
        self._advisories[(stream, durable)] = await self._nc.subscribe(subject, cb=on_advisory)

    async def _dead_letter(
        self, options: ConsumeOptions, seq: int, msg: Msg | None, deliveries: int
    ) -> None:
        if msg is not None:
            env = decode(msg.data)
        else:
            found = await load(
                (await self._jetstream())._jsm, self.names.stream(options.topic), seq
            )
            if found is None:
                return
            env = found
        meta = dict(env.metadata)
        meta.update(
            {
                "dead_letter.topic": options.topic,
                "dead_letter.sequence": str(seq),
                "dead_letter.group": options.group,
                "dead_letter.deliveries": str(deliveries),
                "dead_letter.timestamp": repr(env.timestamp),
            }
        )
        await self.publish(
            options.dead_letter_topic,
            env.body,
            metadata=meta,
            key=env.key,
            message_id=StreamNames.message_id("dead", options.topic, options.group, str(seq)),
        )
