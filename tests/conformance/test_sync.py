"""The sync conformance suite against every backend: memory, SQLite, and RPC (a real
``sync`` service over memory and over SQLite, called through :class:`RpcSync`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import Service
from micro.registry.memory import MemoryRegistry
from micro.sync import Sync
from micro.sync.handler import SyncHandler
from micro.sync.memory import MemorySync
from micro.sync.rpc import RpcSync
from micro.sync.sqlite import SqliteSync
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.sync import SyncConformance


@pytest.fixture
def clock() -> FakeClock:
    """The clock the backing backend reads."""
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "rpc-memory", "rpc-sqlite"])
async def sync(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Sync]:
    """A fresh backend of each kind."""
    backend: MemorySync | SqliteSync
    if request.param.endswith("memory"):
        backend = MemorySync(clock)
    else:
        backend = SqliteSync(tmp_path / "sync.db", clock)
        await backend.start()
    if not request.param.startswith("rpc"):
        yield backend
        await backend.close()
        return
    svc = Service("sync", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(SyncHandler(backend), name="Sync")
    await svc.start()
    client = RpcSync(svc.address)
    try:
        yield client
    finally:
        await client.close()
        await svc.stop(grace=1.0)
        await backend.close()


class TestSync(SyncConformance):
    """Every conformance case, on every backend."""
