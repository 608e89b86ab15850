"""PostgresConfig on a real PostgreSQL: secrets at rest, watch across processes and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from micro.config import Change
from micro.config.keys import generate_key
from micro.config.postgres import PostgresConfig
from micro.errors import MicroError

from ._postgres import PostgresServer, running_postgres

NS = "app"


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with running_postgres() as server:
        yield server


async def _retry(call: Any, attempts: int = 200) -> Any:
    """Await ``call()`` until the server is back: every failure must be ``unavailable``."""
    for _ in range(attempts):
        try:
            return await call()
        except MicroError as err:
            assert err.code == "unavailable", err
            await asyncio.sleep(0.05)
    raise AssertionError(f"still unavailable after {attempts} attempts")


async def test_secrets_are_encrypted_at_rest_and_need_the_key(postgres_dsn: str) -> None:
    key = generate_key()
    config = PostgresConfig(postgres_dsn, key)
    await config.set(NS, "db.password", "hunter2-cleartext", secret=True)
    await config.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = await conn.fetch("SELECT document FROM micro_config_documents")
        logged = await conn.fetch("SELECT document FROM micro_config_changes")
    finally:
        await conn.close()
    assert rows and logged
    assert all(b"hunter2" not in bytes(r["document"]) for r in [*rows, *logged])
    again = PostgresConfig(postgres_dsn, key)
    try:
        assert await again.get(NS, "db.password", secrets=True) == "hunter2-cleartext"
        assert await again.get(NS, "db.password") == "[secret]"
    finally:
        await again.close()
    stranger = PostgresConfig(postgres_dsn, generate_key())
    try:
        with pytest.raises(MicroError) as info:
            await stranger.get(NS, "db.password", secrets=True)
        assert info.value.code == "internal" and "decrypted" in info.value.detail
    finally:
        await stranger.close()


async def test_watch_across_processes_survives_a_server_restart(
    private_postgres: PostgresServer,
) -> None:
    dsn = private_postgres.create_database()
    key = generate_key()
    watching = PostgresConfig(dsn, key, connect_timeout=2)
    writing = PostgresConfig(dsn, key, connect_timeout=2)
    watcher = watching.watch(NS, "flag")
    try:
        await watching.get(NS)  # listening from here on
        await writing.set(NS, "flag", 1)
        first = await asyncio.wait_for(anext(watcher), 10)
        assert (first.path, first.value) == ("flag", 1)
        await asyncio.to_thread(private_postgres.stop, "immediate")
        with pytest.raises(MicroError) as info:
            await writing.set(NS, "flag", 99)
        assert info.value.code == "unavailable"
        await asyncio.to_thread(private_postgres.start)
        await _retry(lambda: watching.get(NS))  # its listener is back
        for value in (2, 3):
            await _retry(lambda v=value: writing.set(NS, "flag", v))
        changes: list[Change] = [await asyncio.wait_for(anext(watcher), 10) for _ in range(2)]
        assert [c.value for c in changes] == [2, 3]
        assert first.version < changes[0].version < changes[1].version
        assert await watching.get(NS, "flag") == 3
    finally:
        await watcher.aclose()  # type: ignore[attr-defined]
        await writing.close()
        await watching.close()
