"""PostgresStore on a real PostgreSQL: server restarts, concurrent writers (single writes
and transactions on the same keys), conflicts, query plans, migrations."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Iterator

import asyncpg
import pytest

from micro.errors import MicroError
from micro.store import Record, WriteOp
from micro.store import _pgsql as sql
from micro.store._pgsql import SCHEMA_VERSION
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
        assert (
            await conn.fetchval("SELECT max(version) FROM micro_store_schema")
            == SCHEMA_VERSION
            == 2
        )
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


# -- one statement per write: serialised with transactions, conditions on the newest row ------


async def test_single_writes_and_transactions_serialise_on_a_key(
    stores: list[PostgresStore],
) -> None:
    """Half the increments are single writes, half transactions, from two stores: each
    conditioned on the etag it read, none may be lost."""
    await stores[0].write(DB, T, "counter", b"0")

    async def increment(i: int) -> None:
        store = stores[i % 2]
        while True:
            (current,) = await store.read(DB, T, "counter")
            value = b"%d" % (int(current.value) + 1)
            try:
                if i % 4 < 2:
                    await store.write(DB, T, "counter", value, etag=current.etag)
                else:
                    await store.transact(
                        DB, T, [WriteOp("counter", value, etag=current.etag), WriteOp("log", value)]
                    )
                return
            except MicroError as err:
                assert err.code == "conflict", err

    await asyncio.wait_for(asyncio.gather(*(increment(i) for i in range(40))), 60)
    assert (await stores[1].read(DB, T, "counter"))[0].value == b"40"


async def test_single_writes_wait_for_a_transaction_holding_their_key(
    stores: list[PostgresStore], postgres_dsn: str
) -> None:
    """A transaction locks its keys, reads, then writes; a single write or delete of one of
    those keys must wait for it and judge its etag on what the transaction wrote."""
    store = stores[0]
    first = await store.write(DB, T, "k", b"1")
    tx, probe = await asyncpg.connect(postgres_dsn), await asyncpg.connect(postgres_dsn)

    async def waiting() -> bool:
        count: int = await probe.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        return count == 3

    try:
        async with tx.transaction():
            await sql.lock_keys(tx, DB, T, ["k"])  # what transact does first
            calls = [
                asyncio.ensure_future(store.write(DB, T, "k", b"etag", etag=first.etag)),
                asyncio.ensure_future(store.delete(DB, T, "k", etag=first.etag)),
                asyncio.ensure_future(store.write(DB, T, "k", b"plain")),
            ]
            await eventually(waiting, 30, message="three writers waiting for the lock")
            assert not any(call.done() for call in calls)
            await tx.execute(
                "UPDATE micro_store_records SET value = 'tx', "
                "version = nextval('micro_store_version') WHERE database = $1 AND tbl = $2 "
                "AND key = 'k'",
                DB,
                T,
            )
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    finally:
        await tx.close()
        await probe.close()
    for failed in results[:2]:
        assert isinstance(failed, MicroError) and failed.code == "conflict", results
    plain = results[2]
    assert isinstance(plain, Record) and plain.value == b"plain"
    assert (await store.read(DB, T, "k"))[0] == plain


async def test_creates_by_write_and_by_transaction_one_wins(stores: list[PostgresStore]) -> None:
    for round_ in range(5):
        key = f"made{round_}"
        calls = [
            stores[i % 2].write(DB, T, key, b"%d" % i, if_absent=True)
            if i % 2
            else stores[i % 2].transact(DB, T, [WriteOp(key, b"%d" % i, if_absent=True)])
            for i in range(16)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert all(
            isinstance(r, MicroError) and r.code == "conflict"
            for r in results
            if isinstance(r, BaseException)
        )
        written = won[0][0] if isinstance(won[0], list) else won[0]
        assert (await stores[0].read(DB, T, key))[0] == written


async def test_a_conflict_names_the_current_etag(stores: list[PostgresStore]) -> None:
    store = stores[0]
    record = await store.write(DB, T, "k", b"1")
    for etag in ("junk", "0" + record.etag, "99999999999999999999"):  # no row can have these
        err = await _conflict(store.write(DB, T, "k", b"2", etag=etag))
        assert record.etag in err.detail and etag in err.detail
        await _conflict(store.delete(DB, T, "k", etag=etag))
    assert (await store.read(DB, T, "k"))[0] == record
    err = await _conflict(store.write(DB, T, "k", b"2", if_absent=True))
    assert "already exists" in err.detail
    await store.delete(DB, T, "k", etag=record.etag)
    err = await _conflict(store.delete(DB, T, "k", etag=record.etag))
    assert "does not exist" in err.detail


async def _conflict(call: Awaitable[object]) -> MicroError:
    with pytest.raises(MicroError) as info:
        await call
    assert info.value.code == "conflict", info.value
    return info.value


# -- the schema: point lookups on the primary key, the upgrade from schema 1 ------------------


async def _plan(conn: asyncpg.Connection, query: str, *args: object) -> str:
    """The executed plan of ``query`` as a generic prepared statement (what asyncpg's cached
    statements become), its effects rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {query}", *args)
    finally:
        await tr.rollback()
    return "\n".join(row[0] for row in rows)


def _filtered(plan: str) -> int:
    """The most rows any node of ``plan`` read and threw away."""
    found = re.findall(r"Rows Removed by Filter: (\d+)", plan)
    return max((int(n) for n in found), default=0)


async def test_lookups_by_key_use_the_primary_key_on_a_freshly_filled_table(
    postgres_server: PostgresServer,
) -> None:
    """Without statistics (no ANALYZE yet), schema 1 planned point reads on the suffix
    index, filtering every row of the table."""
    dsn = postgres_server.create_database()
    store = PostgresStore(dsn, purge_interval=0)
    await store.start()
    conn = await asyncpg.connect(dsn)
    try:
        ops = [WriteOp(f"key-{i:05d}", b"v") for i in range(1000)]
        for _ in range(3):
            await store.transact(DB, T, ops)
        (record,) = await store.read(DB, T, "key-00042")
        version = int(record.etag)
        lock = sql.lock_id(DB, T, "key-00042")
        row = (DB, T, "key-00042")
        plans = {
            "read": await _plan(conn, sql.READ, DB, T, 0.0, "key-00042"),
            "read_many": await _plan(conn, sql.READ_MANY, DB, T, 0.0, ["key-00042", "key-00999"]),
            "versions": await _plan(conn, sql.VERSIONS, DB, T, 0.0, ["key-00042"]),
            "replace": await _plan(conn, sql.REPLACE, lock, *row, b"x", None, None, version, 0.0),
            "delete_if": await _plan(conn, sql.DELETE_IF, lock, *row, version, 0.0),
            "delete": await _plan(conn, sql.DELETE, lock, *row),
        }
        for name, plan in plans.items():
            assert "micro_store_records_pkey" in plan, (name, plan)
            assert "micro_store_records_rkey" not in plan, (name, plan)
            assert _filtered(plan) == 0, (name, plan)
        # the suffix index still serves suffix scans
        query, args = sql.scan("key", DB, T, "", "00042", "asc", None, 0, 0.0)
        await conn.execute("ANALYZE micro_store_records")
        assert "micro_store_records_rkey" in await _plan(conn, query, *args)
    finally:
        await conn.close()
        await store.close()


async def test_schema_1_is_upgraded_in_place(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database()
    conn = await asyncpg.connect(dsn)
    try:
        for statement in sql.MIGRATIONS[0][1]:  # schema 1, as the previous release made it
            await conn.execute(statement)
        await conn.execute("CREATE TABLE micro_store_schema (version int NOT NULL)")
        await conn.execute("INSERT INTO micro_store_schema (version) VALUES (1)")
        await conn.execute(
            "INSERT INTO micro_store_records (database, tbl, key, rkey, value, version) "
            "SELECT $1, $2, k, reverse(k), convert_to(k, 'UTF8'), nextval('micro_store_version') "
            "FROM (SELECT 'old-' || i AS k FROM generate_series(1, 50) AS i) AS s",
            DB,
            T,
        )
        (before,) = await conn.fetch(
            "SELECT key, version FROM micro_store_records WHERE key = 'old-7'"
        )
        store = PostgresStore(dsn, purge_interval=0)
        await store.start()
        try:
            versions = await conn.fetch("SELECT version FROM micro_store_schema ORDER BY version")
            assert [row["version"] for row in versions] == [1, 2]
            index = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'micro_store_records_rkey'"
            )
            assert index.endswith("WHERE (rkey IS NOT NULL)"), index
            (record,) = await store.read(DB, T, "old-7")
            assert (record.value, record.etag) == (b"old-7", str(before["version"]))
            assert [r.key for r in await store.read(DB, T, "-7", suffix=True)] == ["old-7"]
            newer = await store.write(DB, T, "old-7", b"new", etag=record.etag)
            assert int(newer.etag) > before["version"]
            assert len(await store.list_keys(DB, T)) == 50
        finally:
            await store.close()
        again = PostgresStore(dsn, purge_interval=0)  # a second start changes nothing
        await again.start()
        await again.close()
        assert await conn.fetchval("SELECT count(*) FROM micro_store_schema") == 2
    finally:
        await conn.close()
