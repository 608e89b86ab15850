"""The events service over RPC: stream life cycle, credit, and the consume protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from micro import MicroError, Service
from micro.client import Client
from micro.events.handler import EventsHandler
from micro.events.memory import MemoryEvents
from micro.events.messages import ConsumeIn, ConsumeOut
from micro.events.rpc import RpcEvents
from micro.registry.memory import MemoryRegistry
from micro.testing.conformance.clock import FakeClock

from .support import receive


@dataclass
class Served:
    """A running events service and the backend behind it."""

    service: Service
    backend: MemoryEvents
    clock: FakeClock


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = FakeClock()
    backend = MemoryEvents(clock=clock, poll_interval=0.01)
    svc = Service("events", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(EventsHandler(backend), name="Events")
    await svc.start()
    try:
        yield Served(svc, backend, clock)
    finally:
        await svc.stop(grace=1.0)
        await backend.close()


async def test_a_dropped_connection_releases_held_events(served: Served) -> None:
    await served.backend.publish("t", b"x")
    client = Client()
    remote = RpcEvents(served.service.address, client=client)
    consumer = await remote.consume("t", "g", start="first", auto_ack=False)
    held = await receive(consumer)
    local = await served.backend.consume("t", "g", auto_ack=False)
    await client.close()  # the connection goes away without closing the stream
    again = await receive(local)
    assert (again.sequence, again.deliveries) == (held.sequence, 2)
    await local.close()


async def test_closing_gives_back_unseen_events_uncounted(served: Served) -> None:
    for i in range(5):
        await served.backend.publish("t", str(i).encode())
    remote = RpcEvents(served.service.address, prefetch=10)
    try:
        consumer = await remote.consume("t", "g", start="first")
        assert (await receive(consumer)).sequence == 1
        await consumer.close()
        local = await served.backend.consume("t", "g")
        rest = await local.fetch(10, timeout=1)
        assert [(e.sequence, e.deliveries) for e in rest] == [(n, 1) for n in range(2, 6)]
    finally:
        await remote.close()


async def test_the_server_sends_no_more_than_the_prefetch(served: Served) -> None:
    for i in range(20):
        await served.backend.publish("t", str(i).encode())
    remote = RpcEvents(served.service.address, prefetch=4)
    try:
        consumer = await remote.consume("t", "g", start="first", auto_ack=False)
        assert len(await consumer.fetch(1)) == 1  # the first batch of 4 has arrived
        local = await served.backend.consume("t", "g", auto_ack=False)
        assert [e.sequence for e in await local.fetch(100, timeout=0.2)] == list(range(5, 21))
    finally:
        await remote.close()


async def test_the_server_refuses_a_late_ack(served: Served) -> None:
    await served.backend.publish("t", b"x")
    remote = RpcEvents(served.service.address)
    try:
        consumer = await remote.consume("t", "g", start="first", auto_ack=False, ack_wait=5)
        event = await receive(consumer)
        served.clock.advance(6)
        with pytest.raises(MicroError) as err:
            await consumer.ack(event)
        assert err.value.status == 404
    finally:
        await remote.close()


async def test_consume_needs_an_opening_message(served: Served) -> None:
    client = Client()
    try:
        for first in (ConsumeIn(credit=1), None):
            stream = client.stream(
                "events", "Events.Consume", address=served.service.address,
                response_type=ConsumeOut, timeout=5,
            )
            if first is not None:
                await stream.send(first)
            await stream.close_send()
            with pytest.raises(MicroError) as err:
                await stream.receive()
            assert err.value.status == 400
            await stream.close()
    finally:
        await client.close()


async def test_a_stopping_server_ends_the_stream(served: Served) -> None:
    remote = RpcEvents(served.service.address)
    try:
        consumer = await remote.consume("t", "g")
        pending = asyncio.ensure_future(consumer.fetch(1))
        await asyncio.sleep(0.05)
        await served.service.stop(grace=0.2)
        with pytest.raises(MicroError):
            await asyncio.wait_for(pending, 5)
    finally:
        await remote.close()


async def test_a_server_that_is_not_there(served: Served) -> None:
    address = served.service.address
    await served.service.stop(grace=0.2)
    remote = RpcEvents(address, timeout=2)
    try:
        with pytest.raises(MicroError) as err:
            await remote.publish("t", b"x")
        assert err.value.code == "unavailable"
        with pytest.raises(MicroError) as err:
            await remote.consume("t", "g")
        assert err.value.code == "unavailable"
    finally:
        await remote.close()
