"""Fixtures of the store tests: a fake clock, a started SQLite store, the store service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from micro import Service
from micro.registry.memory import MemoryRegistry
from micro.store.handler import StoreHandler
from micro.store.sqlite import SqliteStore
from micro.testing.conformance.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """Time that moves only when a test moves it."""
    return FakeClock()


@pytest.fixture
async def sqlite(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A started SQLite store in ``tmp_path / "store.db"``."""
    store = SqliteStore(tmp_path / "store.db", clock=clock)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def service(sqlite: SqliteStore) -> AsyncIterator[Service]:
    """The ``store`` service on a free loopback port, over the SQLite store."""
    svc = Service("store", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(StoreHandler(sqlite), name="Store")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop(grace=1.0)
