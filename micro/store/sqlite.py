"""The durable store: one SQLite file (WAL, ``synchronous=FULL``), group commit.

The event loop never touches SQLite. One writer thread runs writes in batches, one
transaction and one fsync per batch, and acknowledges a write only after its batch is
committed, so an acknowledged write survives ``kill -9`` and power loss. Reader threads
(``readers``, default 2) run reads in batches over their own connections (see
:mod:`micro._sqlite_worker`). Point reads go through a write-through cache of
``cache_bytes`` (default 64 MiB; 0 turns it off; see :mod:`micro.store._cache`), which is
why one store object owns its file: a lock file (``PATH.lock``) keeps a second one out.

Lifecycle: :meth:`SqliteStore.start` takes the lock, creates or opens the file, starts the
threads and the purge task (expired records are deleted every ``purge_interval`` seconds);
the first operation starts the store if nobody did. :meth:`SqliteStore.close` finishes the
queued writes and stops everything; operations after it fail with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import MicroError, not_found, unavailable
from . import DEFAULT_MAX_VALUE, Op, Order, Record, WriteOp
from . import _sql as sql
from ._cache import MISS, RecordCache
from ._engine import Engine
from ._purge import purge_forever
from ._rules import copy_record, expiry_of, is_live
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

__all__ = ["SqliteStore"]


_PURGE_CHUNK = 10_000


class SqliteStore:
    """Records in the SQLite file ``path`` (created with its directory when missing)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        max_value: int = DEFAULT_MAX_VALUE,
        purge_interval: float = 60.0,
        readers: int = 2,
        max_batch: int = 512,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if readers < 1 or max_batch < 1 or cache_bytes < 0:
            raise ValueError("readers and max_batch must be positive, cache_bytes not negative")
        self.path = Path(path)
        self._clock = clock
        self.max_value = max_value
        self.purge_interval = purge_interval
        self._engine = Engine(self.path, readers=readers, max_batch=max_batch)
        self._cache = RecordCache(cache_bytes)
        self._open = False
        self._closed = False
        self._starting: asyncio.Future[None] | None = None
        self._purger: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the file, open it (creating it), start the threads and the purge task."""
        if self._closed:
            raise unavailable(ID, "the store is closed")
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._engine.open())
        try:
            await asyncio.shield(self._starting)
        except MicroError:
            self._starting = None
            raise
        if not self._open:
            self._open = True
            if self.purge_interval > 0:
                self._purger = asyncio.get_running_loop().create_task(
                    purge_forever(self.purge, self.purge_interval)
                )

    async def _ready(self) -> Engine:
        if not self._open:
            await self.start()
        return self._engine

    async def close(self) -> None:
        """Finish queued writes, stop the threads and the purge task, release the file."""
        self._closed = True
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._starting is not None:
            with contextlib.suppress(MicroError):
                await self._starting
        self._open = False
        await self._engine.close()
        self._cache.clear()

    async def purge(self) -> int:
        """Delete every expired record now; return how many went."""
        engine = await self._ready()
        total = 0
        while True:
            dropped: int = await engine.write(
                functools.partial(sql.purge, self._clock(), _PURGE_CHUNK)
            )
            total += dropped
            if dropped < _PURGE_CHUNK:
                return total

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
        if not prefix and not suffix:
            if limit is not None or offset or order != "asc":
                check_page(limit, offset, order)
            cache_key = (database, table, key)
            found = self._cache.get(cache_key)  # only valid names and keys are ever cached
            if found is MISS:
                check_table(database, table)
                check_key(key)
                engine = self._engine if self._open else await self._ready()
                after = functools.partial(self._cache.filled, cache_key, self._cache.epoch)
                found = await engine.read(
                    functools.partial(sql.read_key, database, table, key), after
                )
            if not isinstance(found, Record) or not is_live(found, self._clock()):
                raise not_found(ID, f"key {key!r} not found in {database}/{table}")
            return [copy_record(found)]
        check_table(database, table)
        check_page(limit, offset, order)
        check_pattern(key, "key")
        engine = await self._ready()
        records: list[Record] = await engine.read(
            functools.partial(
                sql.scan,
                database,
                table,
                key if prefix else "",
                key if suffix else "",
                order,
                limit,
                offset,
                self._clock(),
            )
        )
        return records

    async def read_many(self, database: str, table: str, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order asked."""
        check_table(database, table)
        check_keys(keys)
        found: dict[str, Record] = {}
        missing: list[str] = []
        for key in keys:
            cached = self._cache.get((database, table, key))
            if isinstance(cached, Record):
                found[key] = cached
            elif cached is MISS:
                missing.append(key)
        if missing:
            engine = await self._ready()
            after = functools.partial(
                self._cache.filled_many, database, table, missing, self._cache.epoch
            )
            found.update(
                await engine.read(functools.partial(sql.read_keys, database, table, missing), after)
            )
        now = self._clock()
        return [copy_record(r) for key in keys if is_live(r := found.get(key), now) and r]

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
        engine = await self._ready()
        keys: list[str] = await engine.read(
            functools.partial(
                sql.scan_keys, database, table, prefix, suffix, order, limit, offset, self._clock()
            )
        )
        return keys

    async def list_databases(self) -> list[str]:
        """Databases with a live record."""
        engine = await self._ready()
        names: list[str] = await engine.read(functools.partial(sql.databases, self._clock()))
        return names

    async def list_tables(self, database: str) -> list[str]:
        """Tables of ``database`` with a live record."""
        check_name("database", database)
        engine = await self._ready()
        names: list[str] = await engine.read(functools.partial(sql.tables, database, self._clock()))
        return names

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
        engine = await self._ready()
        now = self._clock()
        record = Record(key, value, dict(metadata or {}), expiry_of(ttl, now))
        job = functools.partial(
            sql.write,
            engine.versions,
            database,
            table,
            key,
            value,
            sql.encode_metadata(metadata),
            record.expiry,
            etag,
            if_absent,
            now,
        )
        written: Record = await engine.write(
            job, functools.partial(self._cache.wrote, database, table, record)
        )
        return written

    async def delete(self, database: str, table: str, key: str, *, etag: str | None = None) -> None:
        """Remove ``key``; with ``etag`` only if it still matches."""
        check_table(database, table)
        check_key(key)
        engine = await self._ready()
        await engine.write(
            functools.partial(sql.delete, database, table, key, etag, self._clock()),
            functools.partial(self._cache.deleted, database, table, key),
        )

    async def transact(self, database: str, table: str, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none."""
        check_table(database, table)
        check_ops(ops, self.max_value)
        engine = await self._ready()
        now = self._clock()
        prepared: list[sql.Prepared] = [
            (
                op.key,
                op.value,
                sql.encode_metadata(op.metadata),
                expiry_of(op.ttl, now),
                op.etag,
                op.if_absent,
            )
            if isinstance(op, WriteOp)
            else (op.key, None, None, None, op.etag, False)
            for op in ops
        ]
        written: list[Record] = await engine.write(
            functools.partial(sql.transact, engine.versions, database, table, prepared, now),
            functools.partial(self._cache.transacted, database, table, list(ops), now),
        )
        return written
