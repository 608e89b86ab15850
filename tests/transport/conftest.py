"""Fixtures for the transport tests: a real service on 127.0.0.1, a client, raw sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from transport_support import SERVICE, WAIT, Echo, Probe, RawConnection, RawFactory, within

from micro import Client, Service
from micro.registry.memory import MemoryRegistry
from micro.transport.frames import PREFACE


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
async def service(registry: MemoryRegistry, probe: Probe) -> AsyncIterator[Service]:
    """The ``echo`` service, listening on a free port of 127.0.0.1."""
    svc = Service(SERVICE, registry=registry, address="127.0.0.1:0")
    svc.handler(Echo(probe))
    await svc.start()
    yield svc
    await svc.stop(grace=1.0)


@pytest.fixture
async def client(registry: MemoryRegistry, service: Service) -> AsyncIterator[Client]:
    async with Client(registry, timeout=WAIT) as c:
        yield c


@pytest.fixture
async def raw(service: Service) -> AsyncIterator[RawFactory]:
    """Open raw connections to ``service``; ``preface=False`` skips the ``MCR1`` preface."""
    opened: list[RawConnection] = []
    host, port = service.address.rsplit(":", 1)

    async def open_raw(preface: bool = True) -> RawConnection:
        reader, writer = await within(asyncio.open_connection(host, int(port)))
        conn = RawConnection(reader, writer)
        opened.append(conn)
        if preface:
            await conn.send(PREFACE)
        return conn

    yield open_raw
    for conn in opened:
        await conn.close()
