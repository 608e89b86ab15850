"""The broker conformance suite: what every :class:`~micro.broker.Broker` backend must do.

Subclass :class:`BrokerConformance` and provide three fixtures:

- ``broker``: the backend under test, whose subscriptions buffer :data:`BUFFER` messages
  and whose backing broker accepts bodies of at most :data:`MAX_BODY` bytes;
- ``clock``: the :class:`~micro.testing.conformance.clock.FakeClock` the backing broker
  stamps messages with;
- ``subscribers``: a callable returning how many live subscriptions the backing broker
  holds (for a client backend, the server-side count).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ...broker import Broker, Message, Subscription
from ...errors import MicroError
from .. import eventually
from .clock import FakeClock

__all__ = ["BUFFER", "MAX_BODY", "BrokerConformance", "Collector", "paced_publish", "receive"]

BUFFER = 16
"""Messages each subscription of the backend under test buffers."""

MAX_BODY = 1024
"""Largest body the backend under test accepts."""


async def receive(sub: Subscription, timeout: float = 5.0) -> Message:
    """The next message of ``sub``, failing the test after ``timeout`` seconds."""
    return await asyncio.wait_for(sub.__anext__(), timeout)


class Collector:
    """Reads a subscription in the background into :attr:`messages`."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.messages: list[Message] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for message in self.sub:
            self.messages.append(message)

    @property
    def count(self) -> int:
        """Messages read so far."""
        return len(self.messages)

    @property
    def dropped(self) -> int:
        """What the subscription dropped."""
        return self.sub.dropped

    def bodies(self) -> list[bytes]:
        """The bodies read so far, in order."""
        return [m.body for m in self.messages]

    async def close(self) -> None:
        """Close the subscription and wait for the reader (raising what it raised)."""
        await self.sub.close()
        await asyncio.wait_for(self._task, 5)

    @staticmethod
    async def close_all(collectors: list[Collector]) -> None:
        """Close each of ``collectors``."""
        for collector in collectors:
            await collector.close()


async def paced_publish(
    broker: Broker, topic: str, bodies: list[bytes], received: Callable[[], int]
) -> None:
    """Publish ``bodies`` in chunks smaller than a buffer, waiting after each chunk until
    ``received()`` caught up, so a subscriber that keeps reading never drops."""
    chunk = BUFFER // 2
    for start in range(0, len(bodies), chunk):
        part = bodies[start : start + chunk]
        for body in part:
            await broker.publish(topic, body)
        sent = start + len(part)
        await eventually(
            _at_least(received, sent), timeout=5, interval=0.001, message=f"{sent} received"
        )


def _at_least(count: Callable[[], int], n: int) -> Callable[[], bool]:
    return lambda: count() >= n


class BrokerConformance:
    """Cases every broker backend passes."""

    # -- delivery --------------------------------------------------------------------------

    async def test_publish_reaches_a_subscriber_with_every_field(
        self, broker: Broker, clock: FakeClock
    ) -> None:
        sub = await broker.subscribe("orders.created")
        message_id = await broker.publish("orders.created", b"\x00\xffbody", {"trace": "t1"})
        got = await receive(sub)
        assert (got.topic, got.body, got.metadata, got.id) == (
            "orders.created",
            b"\x00\xffbody",
            {"trace": "t1"},
            message_id,
        )
        assert got.timestamp == clock.now
        assert (sub.topic, sub.group, sub.pending, sub.dropped) == ("orders.created", None, 0, 0)
        await sub.close()

    async def test_a_message_published_before_subscribing_is_not_delivered(
        self, broker: Broker
    ) -> None:
        await broker.publish("ephemeral", b"before")
        sub = await broker.subscribe("ephemeral")
        await broker.publish("ephemeral", b"after")  # right after subscribe() returned
        assert (await receive(sub)).body == b"after"
        await sub.close()

    async def test_topics_are_matched_exactly(self, broker: Broker) -> None:
        sub = await broker.subscribe("a.b")
        await broker.publish("a", b"parent")
        await broker.publish("a.b.c", b"child")
        await broker.publish("a.b", b"mine")
        assert (await receive(sub)).body == b"mine"
        await sub.close()

    async def test_every_ungrouped_subscriber_gets_every_message(self, broker: Broker) -> None:
        subs = [await broker.subscribe("fan") for _ in range(3)]
        collectors = [Collector(s) for s in subs]
        bodies = [f"m{i}".encode() for i in range(40)]
        await paced_publish(broker, "fan", bodies, lambda: min(c.count for c in collectors))
        for collector in collectors:
            assert collector.bodies() == bodies
        await Collector.close_all(collectors)

    async def test_ids_are_unique(self, broker: Broker) -> None:
        ids = {await broker.publish("ids", b"x") for _ in range(50)}
        assert len(ids) == 50 and all(ids)

    async def test_messages_arrive_in_publish_order(self, broker: Broker) -> None:
        collector = Collector(await broker.subscribe("ordered"))
        bodies = [i.to_bytes(2, "big") for i in range(300)]
        await paced_publish(broker, "ordered", bodies, lambda: collector.count)
        assert collector.bodies() == bodies
        await collector.close()

    # -- queue groups ----------------------------------------------------------------------

    async def test_a_queue_group_shares_messages_fairly_each_to_one_member(
        self, broker: Broker
    ) -> None:
        members = [Collector(await broker.subscribe("work", "workers")) for _ in range(3)]
        bodies = [f"job{i}".encode() for i in range(100)]
        await paced_publish(broker, "work", bodies, lambda: sum(m.count for m in members))
        got = [b for m in members for b in m.bodies()]
        assert sorted(got) == sorted(bodies)  # each message exactly once in the group
        for member in members:
            assert member.count >= 10, [m.count for m in members]
            assert member.bodies() == [b for b in bodies if b in set(member.bodies())]
        await Collector.close_all(members)

    async def test_every_group_and_ungrouped_subscriber_gets_each_message_once(
        self, broker: Broker
    ) -> None:
        groups = {
            name: [Collector(await broker.subscribe("mix", name)) for _ in range(2)]
            for name in ("billing", "audit")
        }
        alone = Collector(await broker.subscribe("mix"))
        bodies = [f"e{i}".encode() for i in range(30)]

        def slowest() -> int:
            return min(alone.count, *(sum(m.count for m in g) for g in groups.values()))

        await paced_publish(broker, "mix", bodies, slowest)
        for members in groups.values():
            assert sorted(b for m in members for b in m.bodies()) == sorted(bodies)
        assert alone.bodies() == bodies
        await Collector.close_all([alone, *(m for g in groups.values() for m in g)])

    async def test_a_member_that_leaves_stops_getting_its_share(self, broker: Broker) -> None:
        first = await broker.subscribe("jobs", "g")
        second = Collector(await broker.subscribe("jobs", "g"))
        await first.close()
        bodies = [f"j{i}".encode() for i in range(10)]
        await paced_publish(broker, "jobs", bodies, lambda: second.count)
        assert second.bodies() == bodies
        await second.close()

    # -- closing ---------------------------------------------------------------------------

    async def test_closing_stops_delivery_and_frees_the_subscription(
        self, broker: Broker, subscribers: Callable[[], int]
    ) -> None:
        assert subscribers() == 0
        gone = await broker.subscribe("t")
        stays = await broker.subscribe("t")
        await eventually(lambda: subscribers() == 2, timeout=5, message="2 subscriptions")
        await gone.close()
        await gone.close()  # idempotent
        await eventually(lambda: subscribers() == 1, timeout=5, message="1 subscription")
        await broker.publish("t", b"after close")
        assert (await receive(stays)).body == b"after close"
        with pytest.raises(StopAsyncIteration):
            await gone.__anext__()
        assert gone.pending == 0
        await stays.close()
        await eventually(lambda: subscribers() == 0, timeout=5, message="no subscription")

    async def test_closing_wakes_a_waiting_reader(self, broker: Broker) -> None:
        sub = await broker.subscribe("idle")
        waiting = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.01)
        await sub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)

    async def test_cancelling_a_wait_loses_no_message(self, broker: Broker) -> None:
        sub = await broker.subscribe("patient")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.05)
        await broker.publish("patient", b"still here")
        assert (await receive(sub)).body == b"still here"
        await sub.close()

    async def test_closing_the_broker_ends_and_frees_its_subscriptions(
        self, broker: Broker, subscribers: Callable[[], int]
    ) -> None:
        subs: list[Subscription] = [
            await broker.subscribe("x"),
            await broker.subscribe("x", "g"),
        ]
        await eventually(lambda: subscribers() == 2, timeout=5, message="2 subscriptions")
        await broker.close()
        for sub in subs:
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(sub.__anext__(), 5)
        await eventually(lambda: subscribers() == 0, timeout=5, message="subscriptions freed")

    # -- limits ----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "topic", ["", ".", "a..b", ".a", "a.", "a b", "a*", "a>", "a/b", "ü", "x" * 256]
    )
    async def test_invalid_topics_are_bad_requests(self, broker: Broker, topic: str) -> None:
        for attempt in (broker.publish(topic, b"x"), broker.subscribe(topic)):
            with pytest.raises(MicroError) as err:
                await attempt
            assert (err.value.code, err.value.status) == ("bad_request", 400)
            assert "topic" in err.value.detail

    async def test_valid_topic_shapes(self, broker: Broker) -> None:
        for topic in ("a", "A.b-c_d.9", "x" * 255):
            sub = await broker.subscribe(topic)
            await broker.publish(topic, b"ok")
            assert (await receive(sub)).topic == topic
            await sub.close()

    @pytest.mark.parametrize("group", ["", "a b", "a..b", "g" * 256])
    async def test_invalid_groups_are_bad_requests(self, broker: Broker, group: str) -> None:
        with pytest.raises(MicroError) as err:
            await broker.subscribe("t", group)
        assert err.value.status == 400 and "group" in err.value.detail

    async def test_a_body_over_the_limit_is_too_large_and_not_delivered(
        self, broker: Broker
    ) -> None:
        sub = await broker.subscribe("big")
        with pytest.raises(MicroError) as err:
            await broker.publish("big", b"x" * (MAX_BODY + 1))
        assert (err.value.code, err.value.status) == ("too_large", 413)
        await broker.publish("big", b"y" * MAX_BODY)
        assert (await receive(sub)).body == b"y" * MAX_BODY
        await sub.close()

    @pytest.mark.parametrize(
        "metadata",
        [{f"k{i}": "v" for i in range(65)}, {"": "v"}, {"k": "v" * 4097}, {"k" * 256: "v"}],
    )
    async def test_bad_metadata_is_a_bad_request(
        self, broker: Broker, metadata: dict[str, str]
    ) -> None:
        with pytest.raises(MicroError) as err:
            await broker.publish("meta", b"x", metadata)
        assert err.value.status == 400 and "metadata" in err.value.detail

    # -- slow subscribers ------------------------------------------------------------------

    async def test_a_slow_subscriber_drops_and_counts_with_bounded_memory(
        self, broker: Broker
    ) -> None:
        slow = await broker.subscribe("firehose")
        fast = Collector(await broker.subscribe("firehose"))
        total = 20 * BUFFER
        bodies = [i.to_bytes(2, "big") for i in range(total)]
        await paced_publish(broker, "firehose", bodies, lambda: fast.count)
        await eventually(
            lambda: slow.pending + slow.dropped == total, timeout=5, message="all accounted"
        )
        assert 1 <= slow.pending <= BUFFER
        assert slow.dropped == total - slow.pending
        kept = [(await receive(slow)).body for _ in range(slow.pending)]
        assert kept == sorted(kept) and set(kept) <= set(bodies)  # in order, none invented
        assert fast.bodies() == bodies and fast.dropped == 0  # others unaffected
        await broker.publish("firehose", b"after")
        assert (await receive(slow)).body == b"after"  # the subscription goes on
        await Collector.close_all([fast])
        await slow.close()

    async def test_a_group_whose_members_are_all_full_drops_and_counts(
        self, broker: Broker
    ) -> None:
        members = [await broker.subscribe("flood", "g") for _ in range(2)]
        sentinel = Collector(await broker.subscribe("flood"))
        total = 10 * BUFFER
        bodies = [i.to_bytes(2, "big") for i in range(total)]
        await paced_publish(broker, "flood", bodies, lambda: sentinel.count)

        def accounted() -> bool:
            return sum(m.pending + m.dropped for m in members) == total

        await eventually(accounted, timeout=5, message="all accounted")
        assert all(1 <= m.pending <= BUFFER for m in members)
        await Collector.close_all([sentinel])
        for member in members:
            await member.close()
