"""The broker conformance suite against :class:`~micro.broker.nats.NatsBroker` on a real
nats-server (started by ``tests/cluster/conftest.py``)."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import AsyncIterator, Callable

import pytest

from micro.broker import Broker
from micro.broker.nats import NatsBroker
from micro.testing.conformance.broker import BUFFER, MAX_BODY, BrokerConformance
from micro.testing.conformance.clock import FakeClock
from tests.cluster._nats import NatsServer
from tests.cluster.conftest import nats_server  # noqa: F401 - the fixture


@pytest.fixture
def clock() -> FakeClock:
    """The clock the broker stamps messages with."""
    return FakeClock()


@pytest.fixture
def connection_name() -> str:
    """A NATS connection name unique to the test, to find its subscriptions on the server."""
    return f"micro-broker-test-{os.urandom(6).hex()}"


@pytest.fixture
def subscribers(nats_server: NatsServer, connection_name: str) -> Callable[[], int]:
    """Live subscriptions the nats-server holds for the broker under test (from ``/connz``)."""

    def count() -> int:
        url = f"{nats_server.monitor_url}/connz?subs=1&limit=1024"
        with urllib.request.urlopen(url, timeout=2) as resp:
            connz = json.load(resp)
        return sum(
            int(c.get("subscriptions", 0))
            for c in connz.get("connections", [])
            if c.get("name") == connection_name
        )

    return count


@pytest.fixture
async def broker(
    nats_server: NatsServer,
    clock: FakeClock,
    connection_name: str,
) -> AsyncIterator[Broker]:
    """A NATS broker on its own connection."""
    backend = NatsBroker(
        [nats_server.url], buffer=BUFFER, max_body=MAX_BODY, name=connection_name, clock=clock
    )
    try:
        yield backend
    finally:
        await backend.close()


class TestNatsBroker(BrokerConformance):
    """Every broker conformance case on NATS core."""
