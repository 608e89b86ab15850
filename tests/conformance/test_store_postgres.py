"""The store conformance suite against :class:`~micro.store.postgres.PostgresStore` on a
real PostgreSQL (tests/cluster/_postgres.py); the table is emptied before every case."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from micro.store import Store
from micro.store.postgres import PostgresStore
from micro.testing.conformance.clock import FakeClock
from micro.testing.conformance.store import StoreConformance
from tests.cluster._postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)


@pytest.fixture
def clock() -> FakeClock:
    """The time the store reads."""
    return FakeClock()


@pytest.fixture
async def store(postgres_dsn: str, clock: FakeClock) -> AsyncIterator[Store]:
    """A started PostgresStore over an emptied records table."""
    backend = PostgresStore(postgres_dsn, clock=clock, pool_max=4)
    await backend.start()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("TRUNCATE micro_store_records")
    finally:
        await conn.close()
    try:
        yield backend
    finally:
        await backend.close()


class TestPostgresStore(StoreConformance):
    """Every case of the suite, on PostgreSQL."""
