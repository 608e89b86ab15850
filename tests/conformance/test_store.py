"""The store conformance suite against every backend: memory, sqlite, and rpc (a real
``store`` service hosting a SQLite store, called through ``RpcStore``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import Service
from micro.registry.memory import MemoryRegistry
from micro.store import Store
from micro.store.handler import StoreHandler
from micro.store.memory import MemoryStore
from micro.store.rpc import RpcStore
from micro.store.sqlite import SqliteStore
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.store import StoreConformance


@pytest.fixture
def clock() -> FakeClock:
    """The time every backend under test reads."""
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "rpc"])
async def store(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Store]:
    """An empty store of each backend."""
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        yield memory
        await memory.close()
        return
    sqlite = SqliteStore(tmp_path / "store.db", clock=clock)
    await sqlite.start()
    if request.param == "sqlite":
        yield sqlite
        await sqlite.close()
        return
    svc = Service("store", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(StoreHandler(sqlite), name="Store")
    await svc.start()
    rpc = RpcStore(svc.address)
    try:
        yield rpc
    finally:
        await rpc.close()
        await svc.stop()
        await sqlite.close()


class TestStore(StoreConformance):
    """Every case of the suite, on every backend."""
