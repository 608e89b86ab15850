"""Writes, deletes and transactions of :mod:`micro.store.postgres`, all or nothing.

A single write or delete (:func:`write_one`, :func:`delete_one`) is one statement, one
round trip, its own transaction (autocommit; acknowledged once committed): it takes the
advisory lock of its key and checks its condition on the newest committed row
(:data:`~micro.store._pgsql.WRITE` and its siblings). Only on a conflict does a second
query read the current etag, for the error.

A transaction (:func:`apply_ops`) runs in one PostgreSQL transaction (READ COMMITTED): it
takes the advisory lock of every key it touches (:func:`~micro.store._pgsql.lock_keys`), so
every other writer of those keys waits; then reads their live versions, checks every
condition in op order (later ops see earlier ones) and applies the net result. A conflict
rolls everything back.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]

from ..errors import MicroError, conflict
from . import DeleteOp, Op, Record, WriteOp
from . import _pgsql as sql
from ._rules import check_condition, expiry_of, in_transaction
from ._sql import encode_metadata
from ._validate import ID

__all__ = ["apply_ops", "delete_one", "write_one"]

_MAX_VERSION = 2**63 - 1


def _version(etag: str) -> int | None:
    """The version an etag names, or None when no row can have it (not a version's text)."""
    if not etag.isascii() or not etag.isdigit() or etag.startswith("0") or len(etag) > 19:
        return None
    number = int(etag)
    return number if number <= _MAX_VERSION else None


async def _conflict(
    conn: asyncpg.Connection,
    database: str,
    table: str,
    key: str,
    now: float,
    etag: str | None,
    if_absent: bool,
) -> MicroError:
    """The ``conflict`` of a conditional write or delete that found its condition false,
    saying what the record is now."""
    current = (await sql.versions(conn, database, table, [key], now)).get(key)
    try:
        check_condition(current, key, etag, if_absent)
    except MicroError as err:
        return err
    # the record changed again between the two queries (a create that met a record
    # deleted since): the condition was false when the statement ran, still a conflict
    return conflict(ID, f"key {key!r} changed while it was written")


async def write_one(
    conn: asyncpg.Connection, database: str, table: str, op: WriteOp, now: float
) -> Record:
    """Apply one validated write at ``now`` in one statement; the record written, or
    ``conflict``."""
    key, lock = op.key, sql.lock_id(database, table, op.key)
    metadata = encode_metadata(op.metadata)
    expiry = expiry_of(op.ttl, now)
    version: int | None
    if op.etag:
        number = _version(op.etag)
        version = None
        if number is not None:
            version = await conn.fetchval(
                sql.REPLACE, lock, database, table, key, op.value, metadata, expiry, number, now
            )
    elif op.if_absent:
        version = await conn.fetchval(
            sql.CREATE, lock, database, table, key, key[::-1], op.value, metadata, expiry, now
        )
    else:
        version = await conn.fetchval(
            sql.WRITE, lock, database, table, key, key[::-1], op.value, metadata, expiry
        )
    if version is None:
        raise await _conflict(conn, database, table, key, now, op.etag, op.if_absent)
    return Record(key, op.value, dict(op.metadata), expiry, str(version))


async def delete_one(
    conn: asyncpg.Connection, database: str, table: str, op: DeleteOp, now: float
) -> None:
    """Apply one validated delete at ``now`` in one statement, or raise ``conflict``."""
    key, lock = op.key, sql.lock_id(database, table, op.key)
    if not op.etag:
        await conn.execute(sql.DELETE, lock, database, table, key)
        return
    number = _version(op.etag)
    if (
        number is None
        or await conn.fetchval(sql.DELETE_IF, lock, database, table, key, number, now) is None
    ):
        raise await _conflict(conn, database, table, key, now, op.etag, False)


async def apply_ops(
    conn: asyncpg.Connection,
    database: str,
    table: str,
    ops: Sequence[Op],
    now: float,
) -> list[Record]:
    """Apply validated ``ops`` to ``database``/``table`` at ``now``, all or nothing; the
    records written, in op order. A conflict names the op that failed."""
    keys = [op.key for op in ops]
    writes = sum(isinstance(op, WriteOp) for op in ops)
    async with conn.transaction():
        await sql.lock_keys(conn, database, table, keys)
        current = await sql.versions(conn, database, table, keys, now)
        numbers: list[int] = []
        if writes:
            rows = await conn.fetch(
                "SELECT nextval('micro_store_version') AS n FROM generate_series(1, $1)", writes
            )
            numbers = [row["n"] for row in rows]
        staged: dict[str, Record | None] = {}
        written: list[Record] = []
        for i, op in enumerate(ops):
            if op.key in staged:
                before = staged[op.key]
                etag = None if before is None else before.etag
            else:
                etag = current.get(op.key)
            is_write = isinstance(op, WriteOp)
            try:
                check_condition(etag, op.key, op.etag, isinstance(op, WriteOp) and op.if_absent)
            except MicroError as err:
                raise in_transaction(i, "write" if is_write else "delete", op.key, err) from None
            if isinstance(op, WriteOp):
                record = Record(
                    op.key,
                    op.value,
                    dict(op.metadata),
                    expiry_of(op.ttl, now),
                    str(numbers[len(written)]),
                )
                staged[op.key] = record
                written.append(record)
            else:
                staged[op.key] = None
        gone = [key for key, r in staged.items() if r is None]
        if gone:
            await conn.execute(
                f"DELETE FROM {sql.TABLE} WHERE database = $1 AND tbl = $2 "
                "AND key = ANY($3::text[])",
                database,
                table,
                gone,
            )
        kept = [r for r in staged.values() if r is not None]
        if kept:
            await conn.execute(
                sql.UPSERT,
                database,
                table,
                [r.key for r in kept],
                [r.key[::-1] for r in kept],
                [r.value for r in kept],
                [encode_metadata(r.metadata) for r in kept],
                [r.expiry for r in kept],
                [int(r.etag) for r in kept],
            )
    return written
