"""The PostgreSQL store: every record a row of one table, reached through an asyncpg pool.

Semantics are those of :class:`~micro.store.memory.MemoryStore`: etags come from one
sequence per PostgreSQL database (never reused), expiry is computed and filtered with the
injected clock (so several processes must share a wall clock), writes and transactions take
per-key advisory locks and check their conditions inside one PostgreSQL transaction (all
or nothing). A single write, delete or read is one statement and one round trip, like
asyncpg used by hand (:mod:`micro.store._pgwrite`); ``synchronous_commit`` is the server's
(on by default: a write is acknowledged once committed). Schema and queries:
:mod:`micro.store._pgsql`.

Pooled connections keep no session state (no ``SET``, ``LISTEN``, cursors or session
locks), so a connection goes back to the pool without asyncpg's reset query: one round
trip less per call (an open transaction is still rolled back).

Lifecycle: :meth:`PostgresStore.start` opens the pool, applies the migrations (``CREATE ...
IF NOT EXISTS`` plus the version table ``micro_store_schema``) and starts the purge task;
the first operation starts the store if nobody did. When the server cannot be reached, or
the connection drops mid-call, the call fails with ``unavailable``; the pool reconnects
by itself on a later call. :meth:`PostgresStore.close` closes the pool; calls after it fail
with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg  # type: ignore[import-untyped]

from ..errors import MicroError, internal, not_found, unavailable
from . import DEFAULT_MAX_VALUE, DeleteOp, Op, Order, Record, WriteOp
from . import _pgsql as sql
from ._pgpool import LOST, PostgresSettings, close_pool, keep_session, open_pool
from ._pgwrite import apply_ops, delete_one, write_one
from ._purge import purge_forever
from ._validate import (
    ID,
    check_key,
    check_keys,
    check_listing,
    check_name,
    check_ops,
    check_page,
    check_pattern,
    check_table,
    check_write,
    to_bytes,
)

__all__ = ["PostgresSettings", "PostgresStore"]


class PostgresStore:
    """Records in the PostgreSQL database of ``dsn``."""

    def __init__(
        self,
        dsn: str,
        *,
        clock: Callable[[], float] = time.time,
        max_value: int = DEFAULT_MAX_VALUE,
        pool_min: int = 1,
        pool_max: int = 10,
        purge_interval: float = 60.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.settings = PostgresSettings(dsn, pool_min, pool_max, connect_timeout, command_timeout)
        self._clock = clock
        self.max_value = max_value
        self.purge_interval = purge_interval
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._purger: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, apply the migrations, start the purge task."""
        await self._ready()
        if self._purger is None and self.purge_interval > 0:
            self._purger = asyncio.get_running_loop().create_task(
                purge_forever(self.purge, self.purge_interval)
            )

    async def _ready(self) -> asyncpg.Pool:
        if self._closed:
            raise unavailable(ID, "the store is closed")
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await open_pool(self.settings, sql.migrate, ID, reset=keep_session)
            return self._pool

    async def close(self) -> None:
        """Stop the purge task and close the pool."""
        self._closed = True
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, self.settings.connect_timeout)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors become ``unavailable`` or ``internal``."""
        pool = await self._ready()
        try:
            async with pool.acquire(timeout=self.settings.connect_timeout) as conn:
                yield conn
        except MicroError:
            raise
        except LOST as exc:
            raise unavailable(ID, f"PostgreSQL is unavailable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise internal(ID, f"PostgreSQL failed: {exc}") from exc

    async def purge(self) -> int:
        """Delete every expired record now; return how many went."""
        async with self._conn() as conn:
            status: str = await conn.execute(
                f"DELETE FROM {sql.TABLE} WHERE expiry <= $1", self._clock()
            )
        return int(status.rsplit(" ", 1)[-1])

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self,
        database: str,
        table: str,
        key: str,
        *,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order: Order = "asc",
    ) -> list[Record]:
        """The record ``key``, or the records whose key starts/ends with ``key``."""
        check_table(database, table)
        check_page(limit, offset, order)
        now = self._clock()
        if not prefix and not suffix:
            check_key(key)
            async with self._conn() as conn:
                row = await conn.fetchrow(sql.READ, database, table, now, key)
            if row is None:
                raise not_found(ID, f"key {key!r} not found in {database}/{table}")
            return [sql.record(row)]
        check_pattern(key, "key")
        query, args = sql.scan(
            sql.COLUMNS,
            database,
            table,
            key if prefix else "",
            key if suffix else "",
            order,
            limit,
            offset,
            now,
        )
        async with self._conn() as conn:
            rows = await conn.fetch(query, *args)
        return [sql.record(row) for row in rows]

    async def read_many(self, database: str, table: str, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order asked."""
        check_table(database, table)
        check_keys(keys)
        if not keys:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(sql.READ_MANY, database, table, self._clock(), list(keys))
        found = {row["key"]: sql.record(row) for row in rows}
        return [
            Record(r.key, r.value, dict(r.metadata), r.expiry, r.etag)
            for key in keys
            if (r := found.get(key)) is not None
        ]

    async def list_keys(
        self,
        database: str,
        table: str,
        *,
        prefix: str = "",
        suffix: str = "",
        limit: int | None = None,
        offset: int = 0,
        order: Order = "asc",
    ) -> list[str]:
        """Keys of live records with ``prefix`` and ``suffix``."""
        check_listing(database, table, prefix, suffix, limit, offset, order)
        query, args = sql.scan(
            "key", database, table, prefix, suffix, order, limit, offset, self._clock()
        )
        async with self._conn() as conn:
            rows = await conn.fetch(query, *args)
        return [row["key"] for row in rows]

    async def list_databases(self) -> list[str]:
        """Databases with a live record."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT database FROM {sql.TABLE} WHERE expiry IS NULL OR expiry > $1 "
                "ORDER BY database",
                self._clock(),
            )
        return [row["database"] for row in rows]

    async def list_tables(self, database: str) -> list[str]:
        """Tables of ``database`` with a live record."""
        check_name("database", database)
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT tbl FROM {sql.TABLE} WHERE database = $1 "
                "AND (expiry IS NULL OR expiry > $2) ORDER BY tbl",
                database,
                self._clock(),
            )
        return [row["tbl"] for row in rows]

    # -- writes --------------------------------------------------------------------------------

    async def write(
        self,
        database: str,
        table: str,
        key: str,
        value: bytes,
        *,
        metadata: dict[str, str] | None = None,
        ttl: float | None = None,
        etag: str | None = None,
        if_absent: bool = False,
    ) -> Record:
        """Store ``value`` under ``key``; return the record with its new etag."""
        check_table(database, table)
        value = to_bytes(value)
        check_write("", key, value, metadata, ttl, etag, if_absent, self.max_value)
        op = WriteOp(key, value, dict(metadata or {}), ttl, etag, if_absent)
        async with self._conn() as conn:
            return await write_one(conn, database, table, op, self._clock())

    async def delete(self, database: str, table: str, key: str, *, etag: str | None = None) -> None:
        """Remove ``key``; with ``etag`` only if it still matches."""
        check_table(database, table)
        check_key(key)
        async with self._conn() as conn:
            await delete_one(conn, database, table, DeleteOp(key, etag), self._clock())

    async def transact(self, database: str, table: str, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none."""
        check_table(database, table)
        check_ops(ops, self.max_value)
        if not ops:
            return []
        async with self._conn() as conn:
            return await apply_ops(conn, database, table, ops, self._clock())
