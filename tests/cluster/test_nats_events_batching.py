"""NatsEvents sends concurrent publishes as atomic batches and pulls many messages per
request: the guarantees of the events contract hold (per-key and call order, dedupe,
timestamps, body bytes, several processes on one topic, exactly one delivery each)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable

import nats
import pytest

from micro.errors import MicroError
from micro.events import Ack, Event
from micro.events.nats import NatsEvents

from ._nats import NatsServer

TIMEOUT = 20.0


def _isolated(server: NatsServer, **settings: object) -> NatsEvents:
    token = os.urandom(5).hex()
    return NatsEvents(
        [server.url],
        stream_prefix=f"B{token}",
        subject_prefix=f"batch.{token}",
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
async def events(nats_server: NatsServer) -> AsyncIterator[NatsEvents]:
    """A NATS events backend on fresh streams of the session's server."""
    backend = _isolated(nats_server)
    try:
        yield backend
    finally:
        await backend.close()


async def _bounded(*calls: Awaitable[Ack]) -> list[Ack]:
    return await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT)


async def test_concurrent_publishes_are_stored_in_call_order(events: NatsEvents) -> None:
    bodies = [f"{i}".encode() for i in range(300)]
    acks = await _bounded(*(events.publish("t", b, key=f"k{i % 7}") for i, b in enumerate(bodies)))
    assert [a.sequence for a in acks] == list(range(1, 301))
    assert events._topics["t"].atomic  # they went as atomic batches
    stored = await events.read("t", limit=1000)
    assert [e.body for e in stored] == bodies
    assert [e.key for e in stored] == [f"k{i % 7}" for i in range(300)]
    stamps = [e.timestamp for e in stored]
    assert stamps == sorted(stamps)
    (info,) = await events.topics()
    assert (info.count, info.bytes) == (300, sum(map(len, bodies)))


async def test_two_processes_batching_on_one_topic_keep_every_guarantee(
    nats_server: NatsServer,
) -> None:
    token = os.urandom(5).hex()
    clocks = [lambda: 2000.0, lambda: 1000.0]  # the second process's clock is behind
    first, second = (
        NatsEvents(
            [nats_server.url], clock=c, stream_prefix=f"P{token}", subject_prefix=f"p.{token}"
        )
        for c in clocks
    )
    try:
        calls = [
            backend.publish("shared", f"{name}{i}".encode(), key=f"{name}{i % 3}")
            for i in range(150)
            for name, backend in (("a", first), ("b", second))
        ]
        acks = await _bounded(*calls)
        assert sorted(a.sequence for a in acks) == list(range(1, 301))
        stored = await first.read("shared", limit=1000)
        assert [e.sequence for e in stored] == list(range(1, 301))
        stamps = [e.timestamp for e in stored]
        assert stamps == sorted(stamps)  # never backwards, whoever appended
        for name in ("a", "b"):  # each process's events in its call order
            mine = [e.body for e in stored if e.body.startswith(name.encode())]
            assert mine == [f"{name}{i}".encode() for i in range(150)]
        info = {t.name: t for t in await second.topics()}["shared"]
        assert (info.count, info.bytes) == (300, sum(len(e.body) for e in stored))
    finally:
        await first.close()
        await second.close()


async def test_duplicate_message_ids_within_one_batch(events: NatsEvents) -> None:
    await events.publish("t", b"seen", message_id="old")
    calls = []
    for i in range(40):
        calls.append(events.publish("t", f"{i}".encode(), message_id=f"m{i % 10}"))
        calls.append(events.publish("t", b"free"))
    calls.append(events.publish("t", b"again", message_id="old"))
    acks = await _bounded(*calls)
    assert acks[-1] == Ack("t", 1, True)
    stored = {e.sequence: e for e in await events.read("t", limit=1000)}
    assert len(stored) == 1 + 10 + 40
    for i, ack in enumerate(acks[:-1:2]):  # the ones with a message id
        assert ack.duplicate == (i >= 10)
        assert stored[ack.sequence].body == f"{i % 10}".encode()
    assert all(not a.duplicate and stored[a.sequence].body == b"free" for a in acks[1:-1:2])


async def test_a_stream_without_atomic_batches_still_takes_publishes(
    events: NatsEvents, nats_server: NatsServer
) -> None:
    await events.publish("t", b"0")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(events.names.stream("t"))).config
        config.allow_atomic = False  # as if switched off behind micro's back
        await js.update_stream(config)
        acks = await _bounded(
            *(events.publish("t", f"{i}".encode(), key="k") for i in range(1, 50))
        )
        assert [a.sequence for a in acks] == list(range(2, 51))
        assert not events._topics["t"].atomic
        stored = await events.read("t", limit=100)
        assert [e.body for e in stored] == [f"{i}".encode() for i in range(50)]
    finally:
        await nc.close()


async def test_a_stream_made_without_atomic_batches_is_upgraded(
    events: NatsEvents, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        stream = events.names.stream("old")
        await js.add_stream(name=stream, subjects=[events.names.subject("old")])
        await js.publish(events.names.subject("old"), b"not an envelope")
        acks = await _bounded(*(events.publish("old", b"x") for _ in range(10)))
        assert [a.sequence for a in acks] == list(range(2, 12))
        assert (await js.stream_info(stream)).config.allow_atomic
    finally:
        await nc.close()


async def test_closing_fails_queued_publishes_instead_of_hanging(events: NatsEvents) -> None:
    await events.publish("t", b"warm")
    tasks = [asyncio.ensure_future(events.publish("t", b"x")) for _ in range(200)]
    await asyncio.sleep(0)
    await events.close()
    done, pending = await asyncio.wait(tasks, timeout=TIMEOUT)
    assert not pending
    for task in done:
        error = task.exception()
        assert error is None or (isinstance(error, MicroError) and error.code == "unavailable")


async def test_one_fetch_pulls_many_and_members_share_the_rest(events: NatsEvents) -> None:
    await _bounded(*(events.publish("t", f"{i}".encode()) for i in range(300)))
    first = await events.consume("t", "g", start="first", auto_ack=False)
    second = await events.consume("t", "g", auto_ack=False)
    got: list[Event] = []
    batch = await first.fetch(1000, timeout=5)
    assert len(batch) > 1  # a batch, not one message per request
    got += batch
    for event in batch:
        await first.ack(event)
    while len(got) < 300:
        for member in (first, second):
            small = await member.fetch(7, timeout=5)
            assert len(small) <= 7
            got += small
            for event in small:
                await member.ack(event)
    assert sorted(e.sequence for e in got) == list(range(1, 301))  # each exactly once
    assert all(e.deliveries == 1 for e in got)
    assert await first.fetch(10, timeout=0.3) == []
    await first.close()
    await second.close()


async def test_keyed_events_wait_for_their_predecessor_in_a_batch(events: NatsEvents) -> None:
    await _bounded(*(events.publish("t", f"{i}".encode(), key=f"k{i % 2}") for i in range(6)))
    consumer = await events.consume("t", "g", start="first", auto_ack=False)
    batch = await consumer.fetch(100, timeout=5)
    assert [e.sequence for e in batch] == [1, 2]  # 3..6 wait behind 1 and 2
    order = [e.sequence for e in batch]
    while len(order) < 6:
        for event in batch:
            await consumer.ack(event)
        batch = await consumer.fetch(100, timeout=5)
        assert len({e.key for e in batch}) == len(batch)  # one in flight per key
        order += [e.sequence for e in batch]
    for event in batch:
        await consumer.ack(event)
    assert order == [1, 2, 3, 4, 5, 6]
    await consumer.close()
