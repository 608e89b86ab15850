"""The broker conformance suite against every backend: memory, and rpc (a real broker
service hosting a memory broker, reached over loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from micro import Service
from micro.broker import Broker
from micro.broker.handler import BrokerHandler
from micro.broker.memory import MemoryBroker
from micro.broker.rpc import RpcBroker
from micro.registry.memory import MemoryRegistry
from micro.testing.conformance.broker import BUFFER, MAX_BODY, BrokerConformance
from micro.testing.conformance.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The clock the backing broker stamps messages with."""
    return FakeClock()


@pytest.fixture
def backing(clock: FakeClock) -> MemoryBroker:
    """The memory broker every backend ends up at."""
    return MemoryBroker(clock=clock, buffer=BUFFER, max_body=MAX_BODY)


@pytest.fixture
def subscribers(backing: MemoryBroker) -> Callable[[], int]:
    """Live subscriptions of the backing broker."""
    return backing.subscriber_count


@pytest.fixture(params=["memory", "rpc"])
async def broker(request: pytest.FixtureRequest, backing: MemoryBroker) -> AsyncIterator[Broker]:
    """The backend under test."""
    if request.param == "memory":
        yield backing
        await backing.close()
        return
    svc = Service("broker", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(BrokerHandler(backing), name="Broker")
    await svc.start()
    client = RpcBroker(svc.address, buffer=BUFFER)
    try:
        yield client
    finally:
        await client.close()
        await backing.close()
        await svc.stop(grace=1.0)


class TestBroker(BrokerConformance):
    """Every conformance case on every backend."""
