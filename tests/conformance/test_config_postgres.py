"""The config conformance suite against :class:`~micro.config.postgres.PostgresConfig` on a
real PostgreSQL (tests/cluster/_postgres.py). The peer is a second PostgresConfig on the
same database, like another process: its writes reach watchers through LISTEN/NOTIFY."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from micro.config import Config
from micro.config.keys import generate_key
from micro.config.postgres import PostgresConfig
from micro.testing.conformance.config import ConfigConformance
from tests.cluster._postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)


@pytest.fixture
def key() -> bytes:
    """The secrets key both instances share."""
    return generate_key()


@pytest.fixture
async def config(postgres_dsn: str, key: bytes) -> AsyncIterator[Config]:
    """A started PostgresConfig over emptied tables."""
    backend = PostgresConfig(postgres_dsn, key, pool_max=4)
    await backend.start()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("TRUNCATE micro_config_documents, micro_config_changes")
    finally:
        await conn.close()
    try:
        yield backend
    finally:
        await backend.close()


class TestPostgresConfig(ConfigConformance):
    """Every conformance case, on PostgreSQL."""

    @pytest.fixture
    async def config_peer(
        self, config: Config, postgres_dsn: str, key: bytes
    ) -> AsyncIterator[Config]:
        """A second PostgresConfig on the same database: another process."""
        peer = PostgresConfig(postgres_dsn, key, pool_max=2)
        try:
            yield peer
        finally:
            await peer.close()
