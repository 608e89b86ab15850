"""The events conformance suite: what every :class:`~micro.events.Events` backend must do.

Subclass :class:`EventsConformance` and provide two fixtures:

- ``events``: the backend under test, on a fresh (empty) log, whose backing backend accepts
  bodies of at most :data:`MAX_BODY` bytes, de-duplicates within :data:`DEDUPE_WINDOW`
  seconds and re-reads its clock at least every 20 ms (``poll_interval=0.01``);
- ``clock``: the :class:`~micro.testing.conformance.clock.FakeClock` the backing backend
  reads. Tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from ...errors import MicroError
from ...events import Consumer, Event, Events
from .. import eventually
from .clock import FakeClock

__all__ = ["DEDUPE_WINDOW", "MAX_BODY", "EventsConformance", "nothing", "receive"]

MAX_BODY = 4096
"""Largest body the backend under test accepts."""

DEDUPE_WINDOW = 120.0
"""The backend's de-duplication window, in seconds."""


async def receive(consumer: Consumer, timeout: float = 5.0) -> Event:
    """The next event of ``consumer``, failing the test after ``timeout`` seconds."""
    return await asyncio.wait_for(consumer.__anext__(), timeout)


async def nothing(consumer: Consumer, wait: float = 0.15) -> bool:
    """True when ``consumer`` gets no event within ``wait`` seconds."""
    return await consumer.fetch(10, timeout=wait) == []


async def _status(call: Awaitable[object]) -> tuple[int, str]:
    with pytest.raises(MicroError) as err:
        await call
    return err.value.status, err.value.detail


class EventsConformance:
    """Every case an events backend must pass."""

    # -- publish and read --------------------------------------------------------------

    async def test_publish_numbers_events_per_topic(self, events: Events) -> None:
        acks = [await events.publish("orders", f"o{i}".encode()) for i in range(3)]
        other = await events.publish("payments", b"p")
        assert [(a.topic, a.sequence, a.duplicate) for a in acks] == [
            ("orders", 1, False),
            ("orders", 2, False),
            ("orders", 3, False),
        ]
        assert (other.topic, other.sequence) == ("payments", 1)

    async def test_read_returns_what_was_published(self, events: Events, clock: FakeClock) -> None:
        await events.publish("t", b"one", metadata={"a": "1"}, key="k1")
        clock.advance(-50)  # a clock that steps back does not stamp an event earlier
        await events.publish("t", b"two")
        first, second = await events.read("t")
        assert (first.topic, first.sequence, first.body, first.metadata, first.key) == (
            "t",
            1,
            b"one",
            {"a": "1"},
            "k1",
        )
        assert first.timestamp == clock.now + 50 and first.deliveries == 0
        assert (second.sequence, second.body, second.key, second.metadata) == (2, b"two", None, {})
        assert second.timestamp == first.timestamp

    async def test_read_by_sequence_time_and_limit(self, events: Events, clock: FakeClock) -> None:
        t0 = clock.now
        for i in range(5):
            await events.publish("t", str(i).encode())
            clock.advance(10)
        assert [e.sequence for e in await events.read("t", start=2, limit=2)] == [2, 3]
        assert [e.sequence for e in await events.read("t", start=t0 + 25.0)] == [4, 5]
        assert [e.sequence for e in await events.read("t", start=t0 + 20.0, limit=1)] == [3]
        assert await events.read("t", start="new") == []
        assert await events.read("t", start=99) == []
        assert (await _status(events.read("missing")))[0] == 404

    async def test_topics_describe_the_log(self, events: Events) -> None:
        await events.publish("b", b"12345")
        await events.publish("b", b"678")
        await events.publish("a", b"x")
        topics = await events.topics()
        assert [t.name for t in topics] == ["a", "b"]
        b = topics[1]
        assert (b.first_sequence, b.last_sequence, b.count, b.bytes) == (1, 2, 2, 8)

    # -- groups and start positions ----------------------------------------------------

    async def test_members_of_a_group_share_events(self, events: Events) -> None:
        members = [await events.consume("jobs", "workers", auto_ack=False) for _ in range(2)]
        got: list[list[int]] = [[], []]

        async def work(index: int) -> None:
            async for event in members[index]:
                got[index].append(event.sequence)
                await members[index].ack(event)

        tasks = [asyncio.ensure_future(work(i)) for i in range(2)]
        try:
            for i in range(20):
                await events.publish("jobs", str(i).encode())
                count = i + 1
                await eventually(lambda: len(got[0]) + len(got[1]) >= count, timeout=5)  # noqa: B023
            await asyncio.sleep(0.1)  # nothing arrives twice later either
        finally:
            for member in members:
                await member.close()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(got[0] + got[1]) == list(range(1, 21))
        assert got[0] and got[1]

    async def test_start_positions(self, events: Events, clock: FakeClock) -> None:
        t0 = clock.now
        for i in range(3):
            await events.publish("t", str(i).encode())
            clock.advance(10)
        first = await events.consume("t", "from-first", start="first")
        new = await events.consume("t", "from-new", start="new")
        by_seq = await events.consume("t", "from-2", start=2)
        by_time = await events.consume("t", "from-time", start=t0 + 15.0)
        await events.publish("t", b"3")
        assert [(await receive(first)).sequence for _ in range(4)] == [1, 2, 3, 4]
        assert (await receive(new)).sequence == 4
        assert [(await receive(by_seq)).sequence for _ in range(3)] == [2, 3, 4]
        assert [(await receive(by_time)).sequence for _ in range(2)] == [3, 4]
        for consumer in (first, new, by_seq, by_time):
            await consumer.close()
        again = await events.consume("t", "from-first", start="first")  # start ignored
        await events.publish("t", b"4")
        assert (await receive(again)).sequence == 5
        await again.close()

    async def test_auto_ack_moves_the_group_on(self, events: Events, clock: FakeClock) -> None:
        for i in range(3):
            await events.publish("t", str(i).encode())
        consumer = await events.consume("t", "g", start="first")
        assert [(await receive(consumer)).sequence for _ in range(2)] == [1, 2]
        await consumer.close()
        clock.advance(3600)
        later = await events.consume("t", "g")
        event = await receive(later)
        assert (event.sequence, event.deliveries) == (3, 1)
        assert await nothing(later)
        assert (await _status(later.ack(event)))[0] == 400
        await later.close()

    # -- acks, nacks, redelivery -------------------------------------------------------

    async def test_manual_ack_and_nack(self, events: Events) -> None:
        await events.publish("t", b"x")
        consumer = await events.consume("t", "g", start="first", auto_ack=False)
        event = await receive(consumer)
        assert event.deliveries == 1
        await consumer.nack(event)
        again = await receive(consumer)
        assert (again.sequence, again.body, again.deliveries) == (1, b"x", 2)
        await consumer.ack(again)
        assert await nothing(consumer)
        assert (await _status(consumer.ack(again)))[0] == 404
        await consumer.close()

    async def test_nack_with_delay(self, events: Events, clock: FakeClock) -> None:
        await events.publish("t", b"x")
        consumer = await events.consume("t", "g", start="first", auto_ack=False)
        await consumer.nack(await receive(consumer), delay=30)
        assert await nothing(consumer)
        clock.advance(30)
        assert (await receive(consumer)).deliveries == 2
        await consumer.close()

    async def test_redelivery_after_ack_wait(self, events: Events, clock: FakeClock) -> None:
        await events.publish("t", b"x")
        consumer = await events.consume("t", "g", start="first", auto_ack=False, ack_wait=5)
        late = await receive(consumer)
        clock.advance(4)
        assert await nothing(consumer)
        clock.advance(2)
        again = await receive(consumer)
        assert (again.sequence, again.deliveries) == (1, 2)
        assert (await _status(consumer.ack(late)))[0] == 404
        await consumer.ack(again)
        clock.advance(60)
        assert await nothing(consumer)
        await consumer.close()

    async def test_closing_releases_held_events(self, events: Events) -> None:
        await events.publish("t", b"x")
        first = await events.consume("t", "g", start="first", auto_ack=False)
        second = await events.consume("t", "g", auto_ack=False)
        held = await receive(first)
        await first.close()
        again = await receive(second)
        assert (again.sequence, again.deliveries) == (held.sequence, 2)
        await second.close()

    async def test_dead_letter_after_max_deliver(self, events: Events) -> None:
        await events.publish("t", b"poison", metadata={"m": "v"}, key="k")
        consumer = await events.consume(
            "t", "g", start="first", auto_ack=False, max_deliver=3, dead_letter_topic="t.bad"
        )
        for attempt in (1, 2, 3):
            event = await receive(consumer)
            assert (event.sequence, event.deliveries) == (1, attempt)
            await consumer.nack(event)
        (dead,) = await events.read("t.bad")
        assert (dead.body, dead.key) == (b"poison", "k")
        assert dead.metadata["m"] == "v"
        assert dead.metadata["dead_letter.topic"] == "t"
        assert dead.metadata["dead_letter.sequence"] == "1"
        assert dead.metadata["dead_letter.group"] == "g"
        assert dead.metadata["dead_letter.deliveries"] == "3"
        await events.publish("t", b"fine", key="k")  # the key is free again
        assert (await receive(consumer)).sequence == 2
        await consumer.close()

    async def test_dead_letter_after_ack_wait(self, events: Events, clock: FakeClock) -> None:
        await events.publish("t", b"slow")
        consumer = await events.consume(
            "t", "g", start="first", auto_ack=False, ack_wait=1, max_deliver=1
        )
        await receive(consumer)
        clock.advance(2)

        async def dead_lettered() -> bool:
            return any(t.name == "t.dead" for t in await events.topics())

        await eventually(dead_lettered, timeout=5, message="dead-lettered by ack wait")
        (dead,) = await events.read("t.dead")
        assert (dead.body, dead.metadata["dead_letter.deliveries"]) == (b"slow", "1")
        assert await nothing(consumer)
        await consumer.close()

    async def test_nack_storm_loses_nothing(self, events: Events) -> None:
        for i in range(30):
            await events.publish("storm", str(i).encode(), key=f"k{i % 3}" if i % 2 else None)
        consumer = await events.consume("storm", "g", start="first", auto_ack=False, max_deliver=3)
        deliveries = 0
        while True:
            batch = await consumer.fetch(7, timeout=0.3)
            if not batch:
                break
            for event in batch:
                deliveries += 1
                await consumer.nack(event)
        dead = await events.read("storm.dead", limit=100)
        assert sorted(int(e.metadata["dead_letter.sequence"]) for e in dead) == list(range(1, 31))
        assert deliveries == 90
        assert {e.body for e in dead} == {str(i).encode() for i in range(30)}
        await consumer.close()

    # -- ordering, de-duplication, delay -----------------------------------------------

    async def test_per_key_order_with_concurrent_members(self, events: Events) -> None:
        for i in range(30):
            await events.publish("t", str(i).encode(), key="abc"[i % 3])
        members = [await events.consume("t", "g", start="first", auto_ack=False) for _ in range(2)]
        inflight = {"a": 0, "b": 0, "c": 0}
        order: dict[str, list[int]] = {"a": [], "b": [], "c": []}
        rng = random.Random(7)
        acked: list[int] = []

        async def work(member: Consumer) -> None:
            async for event in member:
                assert event.key is not None
                assert inflight[event.key] == 0, "two events of one key in flight"
                inflight[event.key] += 1
                order[event.key].append(event.sequence)
                await asyncio.sleep(rng.random() * 0.004)
                inflight[event.key] -= 1
                await member.ack(event)
                acked.append(event.sequence)

        tasks = [asyncio.ensure_future(work(m)) for m in members]
        try:
            await eventually(lambda: len(acked) == 30, timeout=10)
        finally:
            for member in members:
                await member.close()
            await asyncio.gather(*tasks)
        for index, key in enumerate("abc"):
            assert order[key] == list(range(index + 1, 31, 3))

    async def test_key_waits_behind_an_earlier_event(
        self, events: Events, clock: FakeClock
    ) -> None:
        await events.publish("t", b"k1", key="k")
        await events.publish("t", b"k2", key="k")
        await events.publish("t", b"free")
        consumer = await events.consume("t", "g", start="first", auto_ack=False)
        first, free = await receive(consumer), await receive(consumer)
        assert (first.sequence, free.sequence) == (1, 3)
        await consumer.nack(first, delay=10)
        await consumer.ack(free)
        assert await nothing(consumer)
        clock.advance(10)
        again = await receive(consumer)
        assert (again.sequence, again.deliveries) == (1, 2)
        assert await nothing(consumer)
        await consumer.ack(again)
        assert (await receive(consumer)).sequence == 2
        await consumer.close()

    async def test_dedupe_within_the_window(self, events: Events, clock: FakeClock) -> None:
        first = await events.publish("t", b"a", message_id="m1")
        again = await events.publish("t", b"b", message_id="m1")
        other = await events.publish("u", b"c", message_id="m1")
        assert (first.sequence, first.duplicate) == (1, False)
        assert (again.sequence, again.duplicate) == (1, True)
        assert (other.sequence, other.duplicate) == (1, False)
        concurrent = await asyncio.gather(
            *(events.publish("t", b"c", message_id="m2") for _ in range(5))
        )
        assert {a.sequence for a in concurrent} == {2}
        assert sum(not a.duplicate for a in concurrent) == 1
        clock.advance(DEDUPE_WINDOW - 1)
        assert (await events.publish("t", b"d", message_id="m1")).duplicate
        clock.advance(2)
        late = await events.publish("t", b"e", message_id="m1")
        assert (late.sequence, late.duplicate) == (3, False)
        assert [e.body for e in await events.read("t")] == [b"a", b"c", b"e"]

    async def test_delayed_delivery(self, events: Events, clock: FakeClock) -> None:
        consumer = await events.consume("t", "g", start="first")
        await events.publish("t", b"later", deliver_at=clock.now + 30)
        await events.publish("t", b"now")
        assert (await receive(consumer)).body == b"now"
        assert await nothing(consumer)
        clock.advance(30)
        event = await receive(consumer)
        assert (event.sequence, event.body) == (1, b"later")
        await consumer.close()

    async def test_waiting_consumer_wakes_on_publish(self, events: Events) -> None:
        consumer = await events.consume("t", "g")
        pending = asyncio.ensure_future(receive(consumer))
        await asyncio.sleep(0.05)
        await events.publish("t", b"hello")
        assert (await pending).body == b"hello"
        done = asyncio.ensure_future(consumer.__anext__())
        await asyncio.sleep(0.05)
        await consumer.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(done, 5)

    # -- retention ---------------------------------------------------------------------

    async def test_retention_purge(self, events: Events, clock: FakeClock) -> None:
        await (await events.consume("by-count", "g", start="first")).close()  # at sequence 1
        for i in range(5):
            await events.publish("by-count", str(i).encode())
            await events.publish("by-age", str(i).encode())
            await events.publish("by-size", b"0123456789")
            clock.advance(10)
        info = await events.retention("by-count", max_events=2)
        assert info.retention.max_events == 2
        await events.retention("by-age", max_age=25)
        await events.retention("by-size", max_bytes=25)
        assert await events.purge() == 3 + 3 + 3
        assert [e.sequence for e in await events.read("by-count")] == [4, 5]
        assert [e.sequence for e in await events.read("by-age")] == [4, 5]
        assert [e.sequence for e in await events.read("by-size")] == [4, 5]
        topics = {t.name: t for t in await events.topics()}
        assert (topics["by-count"].first_sequence, topics["by-count"].count) == (4, 2)
        assert topics["by-size"].bytes == 20
        late = await events.consume("by-count", "g")
        assert (await receive(late)).sequence == 4  # the group skips what was purged
        assert await events.purge() == 0
        await late.close()

    # -- bad input ---------------------------------------------------------------------

    async def test_bad_input_is_refused(self, events: Events) -> None:
        cases: list[tuple[Callable[[], Awaitable[object]], int]] = [
            (lambda: events.publish("bad topic", b"x"), 400),
            (lambda: events.publish("", b"x"), 400),
            (lambda: events.publish("t" * 256, b"x"), 400),
            (lambda: events.publish("t", b"x" * (MAX_BODY + 1)), 413),
            (lambda: events.publish("t", b"x", key="k" * 256), 400),
            (lambda: events.publish("t", b"x", key=""), 400),
            (lambda: events.publish("t", b"x", message_id="m" * 256), 400),
            (lambda: events.publish("t", b"x", metadata={"": "v"}), 400),
            (lambda: events.publish("t", b"x", deliver_at=float("nan")), 400),
            (lambda: events.consume("t", "bad group"), 400),
            (lambda: events.consume("t", "g", start="middle"), 400),  # type: ignore[arg-type]
            (lambda: events.consume("t", "g", start=0), 400),
            (lambda: events.consume("t", "g", ack_wait=0), 400),
            (lambda: events.consume("t", "g", max_deliver=0), 400),
            (lambda: events.consume("t", "g", dead_letter_topic="t"), 400),
            (lambda: events.consume("t", "g", max_ack_pending=0), 400),
            (lambda: events.read("t", limit=0), 400),
            (lambda: events.read("t", start=-1), 400),
            (lambda: events.retention("t", max_events=0), 400),
            (lambda: events.retention("t", max_age=-1.0), 400),
        ]
        for call, status in cases:
            assert (await _status(call()))[0] == status
        assert await events.topics() == []  # nothing was stored or created

    async def test_bad_acks_are_refused(self, events: Events) -> None:
        await events.publish("t", b"x")
        await events.publish("u", b"y")
        consumer = await events.consume("t", "g", start="first", auto_ack=False)
        other = await events.consume("u", "g", start="first", auto_ack=False)
        mine, theirs = await receive(consumer), await receive(other)
        assert (await _status(consumer.ack(theirs)))[0] == 400
        forged = Event("t", 99, 0.0, b"", deliveries=1)
        assert (await _status(consumer.ack(forged)))[0] == 404
        assert (await _status(consumer.nack(mine, delay=-1)))[0] == 400
        assert (await _status(consumer.fetch(0)))[0] == 400
        await consumer.ack(mine)
        await consumer.close()
        await other.close()
