"""Writes, deletes and transactions of :mod:`micro.store.postgres`, all or nothing.

Each runs in one PostgreSQL transaction (READ COMMITTED): it takes the advisory lock of
every key it touches (:func:`~micro.store._pgsql.lock_keys`), so every other writer of those
keys waits; then reads their live versions, checks every condition in op order (later ops
see earlier ones) and applies the net result. A conflict rolls everything back.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]

from ..errors import MicroError
from . import Op, Record, WriteOp
from . import _pgsql as sql
from ._rules import check_condition, expiry_of, in_transaction
from ._sql import encode_metadata

__all__ = ["apply_ops"]


async def apply_ops(
    conn: asyncpg.Connection,
    database: str,
    table: str,
    ops: Sequence[Op],
    now: float,
    *,
    single: bool,
) -> list[Record]:
    """Apply validated ``ops`` to ``database``/``table`` at ``now``; the records written, in
    op order. ``single``: one plain write or delete (errors do not name the op)."""
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
                if single:
                    raise
                raise in_transaction(i, "write" if is_write else "delete", op.key, err) from None
            if isinstance(op, WriteOp):
                record = Record(
                    op.key, op.value, dict(op.metadata), expiry_of(op.ttl, now),
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
                database, table, gone,
            )
        kept = [r for r in staged.values() if r is not None]
        if kept:
            await conn.execute(
                sql.UPSERT, database, table,
                [r.key for r in kept], [r.key[::-1] for r in kept], [r.value for r in kept],
                [encode_metadata(r.metadata) for r in kept], [r.expiry for r in kept],
                [int(r.etag) for r in kept],
            )
    return written
