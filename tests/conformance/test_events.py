"""The events conformance suite against every backend: memory, sqlite, and rpc (a real
events service hosting a SQLite log, reached over loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import Service
from micro.events import Events
from micro.events.handler import EventsHandler
from micro.events.memory import MemoryEvents
from micro.events.rpc import RpcEvents
from micro.events.sqlite import SqliteEvents
from micro.registry.memory import MemoryRegistry
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.events import DEDUPE_WINDOW, MAX_BODY, EventsConformance

POLL = 0.01


@pytest.fixture
def clock() -> FakeClock:
    """The clock the backing backend reads."""
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "rpc"])
async def events(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Events]:
    """The backend under test, on an empty log."""
    settings = {
        "clock": clock, "max_body": MAX_BODY, "dedupe_window": DEDUPE_WINDOW,
        "poll_interval": POLL,
    }
    if request.param == "memory":
        memory = MemoryEvents(**settings)  # type: ignore[arg-type]
        yield memory
        await memory.close()
        return
    backing = SqliteEvents(tmp_path / "events.db", **settings)  # type: ignore[arg-type]
    if request.param == "sqlite":
        yield backing
        await backing.close()
        return
    svc = Service("events", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(EventsHandler(backing), name="Events")
    await svc.start()
    client = RpcEvents(svc.address)
    try:
        yield client
    finally:
        await client.close()
        await svc.stop(grace=1.0)
        await backing.close()


class TestEvents(EventsConformance):
    """Every conformance case on every backend."""
