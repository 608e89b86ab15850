"""The in-process engine (memory backend): settings, life cycle, upkeep, batching, and
cancellation that loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from micro import MicroError
from micro.events import Consumer, Events, Retention
from micro.events.memory import MemoryEvents
from micro.events.rpc import RpcEvents
from micro.events.sqlite import SqliteEvents
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock

from .support import receive


def test_settings_are_validated() -> None:
    for bad in (
        {"max_body": 0},
        {"poll_interval": 0.0},
        {"purge_interval": -1.0},
        {"dedupe_window": -1.0},
        {"retention": Retention(max_events=0)},
    ):
        with pytest.raises(ValueError):
            MemoryEvents(**bad)


async def test_backends_implement_the_protocol(tmp_path: Path) -> None:
    events = MemoryEvents()
    consumer = await events.consume("t", "g")
    assert isinstance(consumer, Consumer)
    for backend in (events, SqliteEvents(tmp_path / "e.db"), RpcEvents("127.0.0.1:1")):
        assert isinstance(backend, Events)
        await backend.close()


async def test_closing_ends_consumers_and_refuses_calls() -> None:
    events = MemoryEvents(poll_interval=0.01)
    consumer = await events.consume("t", "g")
    waiting = asyncio.ensure_future(consumer.__anext__())
    await asyncio.sleep(0.02)
    await events.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(MicroError) as err:
        await events.publish("t", b"x")
    assert err.value.code == "unavailable"


async def test_upkeep_applies_retention_and_expiry_by_itself() -> None:
    clock = FakeClock()
    events = MemoryEvents(
        clock=clock, poll_interval=0.01, purge_interval=0.05, retention=Retention(max_events=2)
    )
    try:
        for i in range(5):
            await events.publish("t", str(i).encode())
        await eventually(lambda: _count(events, "t", 2), timeout=5, message="purged")
        consumer = await events.consume(
            "t", "g", start="first", auto_ack=False, ack_wait=1, max_deliver=1
        )
        await receive(consumer)
        clock.advance(5)  # nobody fetches: the upkeep dead-letters the expired delivery
        await eventually(lambda: _count(events, "t.dead", 1), timeout=5, message="dead-lettered")
        await consumer.close()
    finally:
        await events.close()


async def _count(events: MemoryEvents, topic: str, count: int) -> bool:
    return any(t.name == topic and t.count == count for t in await events.topics())


async def test_fetch_returns_batches_within_max_ack_pending() -> None:
    events = MemoryEvents(poll_interval=0.01)
    try:
        for i in range(10):
            await events.publish("t", str(i).encode())
        auto = await events.consume("t", "auto", start="first")
        assert [e.sequence for e in await auto.fetch(4)] == [1, 2, 3, 4]
        manual = await events.consume(
            "t", "manual", start="first", auto_ack=False, max_ack_pending=3
        )
        held = await manual.fetch(10)
        assert [e.sequence for e in held] == [1, 2, 3]
        assert await manual.fetch(10, timeout=0.05) == []
        await manual.ack(held[0])
        assert [e.sequence for e in await manual.fetch(10)] == [4]
    finally:
        await events.close()


async def test_a_cancelled_fetch_loses_nothing() -> None:
    events = MemoryEvents(poll_interval=0.01)
    try:
        consumer = await events.consume("t", "g")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consumer.__anext__(), 0.05)
        await events.publish("t", b"x")
        assert (await receive(consumer)).body == b"x"
    finally:
        await events.close()


async def test_default_retention_and_a_topic_of_its_own() -> None:
    clock = FakeClock()
    events = MemoryEvents(clock=clock, retention=Retention(max_age=60))
    try:
        for topic in ("short", "long"):
            await events.publish(topic, b"old")
        await events.retention("long", max_age=3600)
        clock.advance(120)
        assert await events.purge() == 1
        infos = {t.name: t for t in await events.topics()}
        assert (infos["short"].count, infos["long"].count) == (0, 1)
        assert infos["short"].retention == Retention(max_age=60)
        assert (infos["short"].first_sequence, infos["short"].last_sequence) == (2, 1)
        assert (await events.publish("short", b"new")).sequence == 2  # numbering goes on
    finally:
        await events.close()


async def test_a_zero_window_turns_dedupe_off() -> None:
    events = MemoryEvents(dedupe_window=0)
    try:
        first = await events.publish("t", b"a", message_id="m")
        second = await events.publish("t", b"a", message_id="m")
        assert (first.sequence, second.sequence, second.duplicate) == (1, 2, False)
    finally:
        await events.close()


async def test_dead_letter_topic_can_be_consumed() -> None:
    events = MemoryEvents(poll_interval=0.01)
    try:
        await events.publish("t", b"poison")
        consumer = await events.consume("t", "g", start="first", auto_ack=False, max_deliver=1)
        dead = await events.consume("t.dead", "ops", start="first")
        await consumer.nack(await receive(consumer))
        event = await receive(dead)
        assert (event.body, event.metadata["dead_letter.sequence"]) == (b"poison", "1")
    finally:
        await events.close()


async def test_a_full_member_does_not_hold_up_the_line() -> None:
    events = MemoryEvents(poll_interval=0.01)
    try:
        full = await events.consume("t", "g", auto_ack=False, max_ack_pending=1)
        other = await events.consume("t", "g", auto_ack=False)
        await events.publish("t", b"1")
        held = await receive(full)
        waiting_full = asyncio.ensure_future(full.fetch(1))  # first in line, but full
        await asyncio.sleep(0.02)
        waiting_other = asyncio.ensure_future(other.fetch(1))
        await asyncio.sleep(0.02)
        await events.publish("t", b"2")
        (event,) = await asyncio.wait_for(waiting_other, 5)
        assert event.sequence == 2 and not waiting_full.done()
        await full.ack(held)
        await events.publish("t", b"3")
        assert [e.sequence for e in await asyncio.wait_for(waiting_full, 5)] == [3]
    finally:
        await events.close()


async def test_acked_deliveries_do_not_pile_up_timers() -> None:
    events = MemoryEvents(poll_interval=0.01)
    try:
        consumer = await events.consume("t", "g", auto_ack=False)
        for i in range(5000):
            await events.publish("t", str(i).encode())
        while batch := await consumer.fetch(500, timeout=0.1):
            for event in batch:
                await consumer.ack(event)
        group = events._topics["t"].groups["g"]
        assert len(group.timers) <= 1024 and not group.inflight
    finally:
        await events.close()
