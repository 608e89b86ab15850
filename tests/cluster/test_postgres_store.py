"""PostgresStore on a real PostgreSQL: server restarts, concurrent writers, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from micro.errors import MicroError
from micro.store import WriteOp
from micro.store.postgres import PostgresStore
from micro.testing import eventually

from ._postgres import PostgresServer, running_postgres

DB, T = "db", "t"


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with running_postgres() as server:
        yield server


@pytest.fixture
async def stores(postgres_dsn: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores over one emptied database, like two processes."""
    pair = [PostgresStore(postgres_dsn, pool_max=8) for _ in range(2)]
    for store in pair:
        await store.start()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("TRUNCATE micro_store_records")
    finally:
        await conn.close()
    try:
        yield pair
    finally:
        for store in pair:
            await store.close()


async def _call_until_up(store: PostgresStore, key: str, attempts: int = 200) -> bytes:
    """Read ``key`` until the store reconnects: every failure must be ``unavailable``."""
    for _ in range(attempts):
        try:
            return (await store.read(DB, T, key))[0].value
        except MicroError as err:
            assert err.code == "unavailable", err
            await asyncio.sleep(0.05)
    raise AssertionError(f"the store did not reconnect within {attempts} attempts")


async def test_restart_surfaces_unavailable_then_reconnects_losing_no_write(
    private_postgres: PostgresServer,
) -> None:
    store = PostgresStore(
        private_postgres.create_database(), pool_max=4, connect_timeout=2, purge_interval=0
    )
    await store.start()
    acknowledged: dict[str, bytes] = {}
    failures: list[str] = []
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            key, value = f"w{n}/{i:05}", f"{n}:{i}".encode()
            try:
                await store.write(DB, T, key, value)
            except MicroError as err:
                failures.append(err.code)
                await asyncio.sleep(0.01)
            else:
                acknowledged[key] = value
            i += 1

    tasks = [asyncio.create_task(writer(n)) for n in range(4)]
    try:
        await eventually(lambda: len(acknowledged) >= 200, 30, message="200 writes")
        await asyncio.to_thread(private_postgres.stop, "immediate")  # a crash
        seen = len(failures)
        await eventually(lambda: len(failures) >= seen + 4, 30, message="failed writes")
        with pytest.raises(MicroError) as info:
            await store.read(DB, T, "w0/00000")
        assert info.value.code == "unavailable"
        await asyncio.to_thread(private_postgres.start)
        assert await _call_until_up(store, "w0/00000") == b"0:0"
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert failures and set(failures) == {"unavailable"}
    found = await store.read_many(DB, T, list(acknowledged)[:1000])
    assert {r.key: r.value for r in found} == dict(list(acknowledged.items())[:1000])
    keys = set(await store.list_keys(DB, T))
    assert set(acknowledged) <= keys  # every acknowledged write survived the crash
    await store.close()


async def test_start_fails_unavailable_while_the_server_is_down(
    private_postgres: PostgresServer,
) -> None:
    dsn = private_postgres.create_database()
    await asyncio.to_thread(private_postgres.stop)
    store = PostgresStore(dsn, connect_timeout=2, purge_interval=0)
    with pytest.raises(MicroError) as info:
        await store.start()
    assert info.value.code == "unavailable"
    await asyncio.to_thread(private_postgres.start)
    await store.start()  # the next attempt connects and migrates
    await store.write(DB, T, "k", b"v")
    assert (await store.read(DB, T, "k"))[0].value == b"v"
    await store.close()
    with pytest.raises(MicroError) as closed:
        await store.read(DB, T, "k")
    assert closed.value.code == "unavailable"


async def test_concurrent_etag_writers_exactly_one_wins_per_round(
    stores: list[PostgresStore],
) -> None:
    first = await stores[0].write(DB, T, "k", b"start")
    etag = first.etag
    for round_ in range(10):
        results = await asyncio.gather(
            *(
                stores[i % 2].write(DB, T, "k", f"{round_}:{i}".encode(), etag=etag)
                for i in range(24)
            ),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert all(isinstance(e, MicroError) and e.code == "conflict" for e in losses)
        (current,) = await stores[round_ % 2].read(DB, T, "k")
        assert current == wins[0]
        etag = current.etag


async def test_concurrent_creates_and_transactions_one_wins(
    stores: list[PostgresStore],
) -> None:
    for round_ in range(5):
        key = f"new{round_}"
        creates = await asyncio.gather(
            *(stores[i % 2].write(DB, T, key, b"%d" % i, if_absent=True) for i in range(16)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in creates) == 1, creates
        ops = [
            [
                WriteOp(f"pair{round_}/a", b"%d" % i, if_absent=True),
                WriteOp(f"pair{round_}/b", b"%d" % i, if_absent=True),
            ]
            for i in range(16)
        ]
        txs = await asyncio.gather(
            *(stores[i % 2].transact(DB, T, ops[i]) for i in range(16)),
            return_exceptions=True,
        )
        won = [r for r in txs if not isinstance(r, BaseException)]
        assert len(won) == 1, txs
        assert all(
            isinstance(r, MicroError) and r.code == "conflict"
            for r in txs
            if isinstance(r, BaseException)
        )
        pair = await stores[1].read(DB, T, f"pair{round_}/", prefix=True)
        assert [r.value for r in pair] == [won[0][0].value, won[0][1].value]


async def test_counter_across_two_stores_loses_no_increment(
    stores: list[PostgresStore],
) -> None:
    await stores[0].write(DB, T, "counter", b"0")

    async def increment(store: PostgresStore) -> None:
        while True:
            (current,) = await store.read(DB, T, "counter")
            try:
                await store.write(
                    DB, T, "counter", b"%d" % (int(current.value) + 1), etag=current.etag
                )
                return
            except MicroError as err:
                assert err.code == "conflict", err

    await asyncio.wait_for(asyncio.gather(*(increment(stores[i % 2]) for i in range(40))), 60)
    assert (await stores[1].read(DB, T, "counter"))[0].value == b"40"


async def test_migrations_are_recorded_and_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, purge_interval=0)
    await store.start()
    await store.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT max(version) FROM micro_store_schema") == 1
        await conn.execute("INSERT INTO micro_store_schema (version) VALUES (99)")
        newer = PostgresStore(postgres_dsn, purge_interval=0)
        with pytest.raises(MicroError) as info:
            await newer.start()
        assert info.value.code == "internal" and "99" in info.value.detail
        await newer.close()
    finally:
        await conn.execute("DELETE FROM micro_store_schema WHERE version = 99")
        await conn.close()


async def test_purge_deletes_expired_rows(postgres_dsn: str) -> None:
    now = [1000.0]
    store = PostgresStore(postgres_dsn, clock=lambda: now[0], purge_interval=0)
    await store.start()
    try:
        await store.write(DB, "purge", "short", b"", ttl=5)
        await store.write(DB, "purge", "long", b"", ttl=50)
        now[0] += 10
        assert await store.purge() == 1
        assert await store.list_keys(DB, "purge") == ["long"]
    finally:
        await store.close()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="dsn"):
        PostgresStore("mysql://x")
    with pytest.raises(ValueError, match="pool"):
        PostgresStore("postgresql://x/y", pool_min=5, pool_max=2)
