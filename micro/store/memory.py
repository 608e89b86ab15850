"""The in-process store: complete, deterministic, with an injectable clock."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

from ..errors import MicroError, not_found
from . import DEFAULT_MAX_VALUE, Op, Order, Record, WriteOp
from ._purge import purge_forever
from ._rules import (
    check_condition,
    copy_record,
    expiry_of,
    in_transaction,
    page,
    successor,
)
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

__all__ = ["MemoryStore"]


class _Table:
    """The records of one table, with their keys kept sorted for prefix scans."""

    __slots__ = ("keys", "records")

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.keys: list[str] = []

    def etag(self, key: str, now: float) -> str | None:
        record = self.live(key, now)
        return None if record is None else record.etag

    def live(self, key: str, now: float) -> Record | None:
        record = self.records.get(key)
        if record is None or (record.expiry is not None and record.expiry <= now):
            return None
        return record

    def put(self, record: Record) -> None:
        if record.key not in self.records:
            bisect.insort(self.keys, record.key)
        self.records[record.key] = record

    def remove(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def scan(self, prefix: str, suffix: str, order: Order, now: float) -> Iterator[Record]:
        """Live records whose key starts with ``prefix`` and ends with ``suffix``."""
        start, end = 0, len(self.keys)
        if prefix:
            start = bisect.bisect_left(self.keys, prefix)
            upper = successor(prefix)
            if upper is not None:
                end = bisect.bisect_left(self.keys, upper, start)
        keys = self.keys[start:end]
        for key in reversed(keys) if order == "desc" else keys:
            if key.endswith(suffix):
                record = self.live(key, now)
                if record is not None:
                    yield record

    def any_live(self, now: float) -> bool:
        return any(r.expiry is None or r.expiry > now for r in self.records.values())


class MemoryStore:
    """Records held in memory, lost when the process ends. Expired records are never
    returned; :meth:`purge` drops them (every ``purge_interval`` seconds after
    :meth:`start`; tests move their clock and call it)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_value: int = DEFAULT_MAX_VALUE,
        purge_interval: float = 60.0,
    ) -> None:
        self._clock = clock
        self.max_value = max_value
        self.purge_interval = purge_interval
        self._tables: dict[tuple[str, str], _Table] = {}
        self._version = 0
        self._purger: asyncio.Task[None] | None = None

    def _etag(self) -> str:
        self._version += 1
        return str(self._version)

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
        found = self._tables.get((database, table))
        if not prefix and not suffix:
            check_key(key)
            record = found.live(key, now) if found is not None else None
            if record is None:
                raise not_found(ID, f"key {key!r} not found in {database}/{table}")
            return [copy_record(record)]
        check_pattern(key, "key")
        if found is None:
            return []
        scan = found.scan(key if prefix else "", key if suffix else "", order, now)
        return [copy_record(r) for r in page(list(scan), limit, offset)]

    async def read_many(self, database: str, table: str, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order asked."""
        check_table(database, table)
        check_keys(keys)
        found = self._tables.get((database, table))
        if found is None:
            return []
        now = self._clock()
        return [copy_record(r) for key in keys if (r := found.live(key, now)) is not None]

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
        found = self._tables.get((database, table))
        if found is None:
            return []
        keys = [r.key for r in found.scan(prefix, suffix, order, self._clock())]
        return page(keys, limit, offset)

    async def list_databases(self) -> list[str]:
        """Databases with a live record."""
        now = self._clock()
        return sorted({db for (db, _), t in self._tables.items() if t.any_live(now)})

    async def list_tables(self, database: str) -> list[str]:
        """Tables of ``database`` with a live record."""
        check_name("database", database)
        now = self._clock()
        return sorted(
            name for (db, name), t in self._tables.items() if db == database and t.any_live(now)
        )

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
        now = self._clock()
        found = self._tables.get((database, table))
        check_condition(found.etag(key, now) if found else None, key, etag, if_absent)
        record = Record(key, value, dict(metadata or {}), expiry_of(ttl, now), self._etag())
        self._tables.setdefault((database, table), _Table()).put(record)
        return copy_record(record)

    async def delete(self, database: str, table: str, key: str, *, etag: str | None = None) -> None:
        """Remove ``key``; with ``etag`` only if it still matches."""
        check_table(database, table)
        check_key(key)
        found = self._tables.get((database, table))
        check_condition(found.etag(key, self._clock()) if found else None, key, etag, False)
        if found is not None:
            found.remove(key)
            self._drop_if_empty(database, table)

    async def transact(self, database: str, table: str, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none."""
        check_table(database, table)
        check_ops(ops, self.max_value)
        now = self._clock()
        found = self._tables.get((database, table))
        staged: dict[str, Record | None] = {}
        written: list[Record] = []
        for i, op in enumerate(ops):
            if op.key in staged:
                staged_record = staged[op.key]
                current = None if staged_record is None else staged_record.etag
            else:
                current = found.etag(op.key, now) if found is not None else None
            if_absent = op.if_absent if isinstance(op, WriteOp) else False
            try:
                check_condition(current, op.key, op.etag, if_absent)
            except MicroError as err:
                kind = "write" if isinstance(op, WriteOp) else "delete"
                raise in_transaction(i, kind, op.key, err) from None
            if isinstance(op, WriteOp):
                record = Record(
                    op.key, op.value, dict(op.metadata), expiry_of(op.ttl, now), self._etag()
                )
                staged[op.key] = record
                written.append(record)
            else:
                staged[op.key] = None
        target = self._tables.setdefault((database, table), _Table())
        for key, staged_record in staged.items():
            if staged_record is None:
                target.remove(key)
            else:
                target.put(staged_record)
        self._drop_if_empty(database, table)
        return [copy_record(r) for r in written]

    def _drop_if_empty(self, database: str, table: str) -> None:
        found = self._tables.get((database, table))
        if found is not None and not found.records:
            del self._tables[(database, table)]

    # -- expiry and lifecycle ------------------------------------------------------------------

    async def purge(self) -> int:
        """Drop every expired record now; return how many went."""
        now = self._clock()
        dropped = 0
        for (database, table), found in list(self._tables.items()):
            dead = [k for k, r in found.records.items() if r.expiry is not None and r.expiry <= now]
            for key in dead:
                found.remove(key)
            dropped += len(dead)
            self._drop_if_empty(database, table)
        return dropped

    async def start(self) -> None:
        """Purge expired records every ``purge_interval`` seconds until :meth:`close`."""
        if self._purger is None and self.purge_interval > 0:
            self._purger = asyncio.get_running_loop().create_task(
                purge_forever(self.purge, self.purge_interval)
            )

    async def close(self) -> None:
        """Stop the purge task (the records stay until the store is dropped)."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
