"""NATS backends against a nats-server of their own: restarts, unreachable servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from micro.broker.nats import NatsBroker
from micro.errors import MicroError
from micro.events import Event
from micro.events.nats import NatsEvents
from micro.testing import eventually

from ._nats import running_nats


async def test_an_unreachable_server_is_unavailable() -> None:
    broker = NatsBroker(["nats://127.0.0.1:1"], connect_timeout=0.5)
    events = NatsEvents(["nats://127.0.0.1:1"], timeout=0.5)
    for call in (broker.publish("t", b"x"), events.publish("t", b"x"), events.topics()):
        with pytest.raises(MicroError) as err:
            await call
        assert err.value.code == "unavailable"
    await broker.close()
    await events.close()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="servers"):
        NatsBroker([])
    with pytest.raises(ValueError, match="buffer"):
        NatsBroker(["nats://127.0.0.1:4222"], buffer=0)
    with pytest.raises(ValueError, match="stream_prefix"):
        NatsEvents(["nats://127.0.0.1:4222"], stream_prefix="a.b")


async def test_no_acknowledged_event_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    with running_nats(tmp_path) as server:
        events = NatsEvents([server.url], timeout=1.0)
        acked: dict[int, bytes] = {}

        async def publisher() -> None:
            for i in range(300):
                body = f"e{i}".encode()
                while True:  # retry an unacknowledged publish: its message id dedupes it
                    try:
                        ack = await events.publish("orders", body, message_id=f"m{i}")
                        break
                    except MicroError as exc:
                        assert exc.code == "unavailable"
                        await asyncio.sleep(0.05)
                acked[ack.sequence] = body

        task = asyncio.ensure_future(publisher())
        await eventually(lambda: len(acked) >= 50, timeout=10, message="50 acked")
        server.stop(kill=True)  # kill -9: sync_interval: always has every ack on disk
        during = len(acked)
        await asyncio.sleep(0.3)
        server.start()  # same port and store: nats-py reconnects by itself
        await asyncio.wait_for(task, 60)
        stored = await events.read("orders", limit=1000)
        assert {e.sequence: e.body for e in stored} == acked
        assert sorted(acked.values()) == sorted(f"e{i}".encode() for i in range(300))
        assert during < 300  # the server went away in the middle of the publishes
        await events.close()


async def test_broker_subscriptions_come_back_after_a_restart(tmp_path: Path) -> None:
    with running_nats(tmp_path) as server:
        broker = NatsBroker([server.url])
        sub = await broker.subscribe("news")
        server.stop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), 0.3)
        server.start()
        got: list[bytes] = []

        async def delivered() -> bool:
            await broker.publish("news", b"again")
            try:
                got.append((await asyncio.wait_for(sub.__anext__(), 0.2)).body)
            except TimeoutError:
                return False
            return True

        await eventually(delivered, timeout=15, message="delivery after the restart")
        assert got == [b"again"]
        await sub.close()
        await broker.close()


async def test_two_processes_publishing_to_one_topic_take_turns(tmp_path: Path) -> None:
    with running_nats(tmp_path) as server:
        clocks = [lambda: 2000.0, lambda: 1000.0]  # the second process's clock is behind
        first, second = (NatsEvents([server.url], clock=c) for c in clocks)
        await first.publish("shared", b"warm")  # both know the tail before they interleave
        await second.publish("shared", b"warm")
        acks = await asyncio.gather(
            *(b.publish("shared", f"{i}".encode()) for i in range(20) for b in (first, second))
        )
        assert sorted(a.sequence for a in acks) == list(range(3, 43))
        stored = await first.read("shared", limit=100)
        assert [e.sequence for e in stored] == list(range(1, 43))
        stamps = [e.timestamp for e in stored]
        assert stamps == sorted(stamps) and stamps[-1] == 2000.0  # never backwards
        info = {t.name: t for t in await second.topics()}["shared"]
        assert (info.count, info.bytes) == (42, 8 + sum(len(f"{i}") for i in range(20)) * 2)
        await first.close()
        await second.close()


async def test_a_consumer_goes_on_after_a_server_restart(tmp_path: Path) -> None:
    with running_nats(tmp_path) as server:
        events = NatsEvents([server.url], timeout=1.0)
        consumer = await events.consume("jobs", "workers", start="first", auto_ack=False)
        await events.publish("jobs", b"before")
        before = await asyncio.wait_for(consumer.__anext__(), 5)
        await consumer.ack(before)
        server.stop(kill=True)
        server.start()
        acked = None
        for _ in range(100):  # bounded: publish as soon as the client is back
            try:
                acked = await events.publish("jobs", b"after")
                break
            except MicroError:
                await asyncio.sleep(0.1)
        assert acked is not None and acked.sequence == 2
        seen: list[Event] = []
        while not seen or seen[-1].sequence != 2:
            event = await asyncio.wait_for(consumer.__anext__(), 15)
            seen.append(event)
            await consumer.ack(event)
        # at least once: an ack JetStream had not written when it was killed may repeat
        assert {e.sequence for e in seen[:-1]} <= {1}
        assert (seen[-1].body, seen[-1].deliveries) == (b"after", 1)
        assert await consumer.fetch(5, timeout=0.3) == []
        await consumer.close()
        await events.close()
