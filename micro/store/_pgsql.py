"""The PostgreSQL schema, its migrations and the queries of :mod:`micro.store.postgres`.

Every record is a row of ``micro_store_records``, whose primary key ``(database, tbl, key)``
is a B-tree over ``COLLATE "C"`` text: keys compare by their UTF-8 bytes (= code points,
the order of Python strings), so a prefix scan is the index range ``key >= prefix AND key <
successor(prefix)`` (what ``text_pattern_ops`` would give, without a second index). Suffix
scans are ranges of a second index on ``rkey``, the key reversed. That index is partial
(``WHERE rkey IS NOT NULL``, every row): a suffix scan's ``rkey >= $n`` implies its
predicate, a lookup by key does not, so the planner can only use the primary key for point
reads and writes, statistics or not (schema 1 had a plain index, which PostgreSQL chose
for point reads of a freshly filled table, filtering every row of it). ``version`` (the
etag) comes from the sequence ``micro_store_version``: never reused, not even after a
delete.

Writers serialise per key with transaction-scoped advisory locks (one per key, taken in a
fixed order). A transaction takes them, reads the live versions, checks the conditions and
applies: all or nothing. A single write or delete is one statement, one round trip: it
takes its key's lock in a CTE and carries its condition itself, evaluated on the newest
committed row (``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` and ``UPDATE``/``DELETE``
re-check their ``WHERE`` on the row they lock), so it is serialised with the transactions
on that key and never acts on a stale read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec

from ..errors import internal
from . import Order, Record
from ._rules import successor
from ._validate import ID

__all__ = [
    "CREATE",
    "DELETE",
    "DELETE_IF",
    "READ",
    "READ_MANY",
    "REPLACE",
    "SCHEMA_VERSION",
    "VERSIONS",
    "WRITE",
    "lock_id",
    "lock_keys",
    "migrate",
    "record",
    "scan",
    "versions",
]

TABLE = "micro_store_records"
LIVE = "(expiry IS NULL OR expiry > $3)"
COLUMNS = "key, value, metadata, expiry, version"
READ = f"SELECT {COLUMNS} FROM {TABLE} WHERE database = $1 AND tbl = $2 AND {LIVE} AND key = $4"
"""The live record of a key: $1 database, $2 table, $3 now, $4 key."""


def _each_key(columns: str) -> str:
    # one primary-key lookup per key of $4, whatever the statistics: the LIMIT keeps the
    # subquery a nested loop (``key = ANY($4)`` may be planned, on a freshly filled table,
    # as a scan of the whole table filtered by the array)
    return (
        f"SELECT r.* FROM unnest($4::text[]) AS u(k) CROSS JOIN LATERAL (SELECT {columns} "
        f"FROM {TABLE} WHERE database = $1 AND tbl = $2 AND key = u.k AND {LIVE} LIMIT 1) AS r"
    )


READ_MANY = _each_key(COLUMNS)
"""The live records of keys $4 (a text array; a key given twice comes twice)."""
VERSIONS = _each_key("key, version")
"""The versions of the live records of keys $4."""
UPSERT = (
    f"INSERT INTO {TABLE} (database, tbl, key, rkey, value, metadata, expiry, version) "
    "SELECT $1, $2, k, r, v, m, e, n FROM unnest($3::text[], $4::text[], $5::bytea[], "
    "$6::bytea[], $7::float8[], $8::bigint[]) AS u(k, r, v, m, e, n) "
    "ON CONFLICT (database, tbl, key) DO UPDATE SET rkey = excluded.rkey, "
    "value = excluded.value, metadata = excluded.metadata, expiry = excluded.expiry, "
    "version = excluded.version"
)

# One write or delete, one statement (autocommit: its own transaction). $1 is the key's
# advisory lock, $2..$4 database, table and key. The CTE takes the lock before the row is
# produced; the statement's condition is then checked against the newest committed row.
_LOCKED = "WITH l AS (SELECT pg_advisory_xact_lock($1::bigint)) "
_INSERT = (
    f"{_LOCKED}INSERT INTO {TABLE} AS r (database, tbl, key, rkey, value, metadata, expiry, "
    "version) SELECT $2::text, $3::text, $4::text, $5::text, $6::bytea, $7::bytea, $8::float8, "
    "nextval('micro_store_version') FROM l ON CONFLICT (database, tbl, key) DO UPDATE SET "
    "value = excluded.value, metadata = excluded.metadata, expiry = excluded.expiry, "
    "version = excluded.version"
)
WRITE = f"{_INSERT} RETURNING version"
"""Write whatever is there: $5 rkey, $6 value, $7 metadata, $8 expiry; the new version."""
CREATE = f"{_INSERT} WHERE r.expiry <= $9::float8 RETURNING version"
""":data:`WRITE` only if the key is absent or expired at $9; no row otherwise."""
REPLACE = (
    f"{_LOCKED}UPDATE {TABLE} SET value = $5::bytea, metadata = $6::bytea, expiry = $7::float8, "
    "version = nextval('micro_store_version') FROM l WHERE database = $2::text "
    "AND tbl = $3::text AND key = $4::text AND version = $8::bigint "
    "AND (expiry IS NULL OR expiry > $9::float8) RETURNING version"
)
"""Write only if the live record has version $8 at $9: $5 value, $6 metadata, $7 expiry;
the new version, or no row."""
DELETE = (
    f"{_LOCKED}DELETE FROM {TABLE} USING l WHERE database = $2::text AND tbl = $3::text "
    "AND key = $4::text"
)
"""Delete whatever is there (live or expired)."""
DELETE_IF = (
    f"{DELETE} AND version = $5::bigint AND (expiry IS NULL OR expiry > $6::float8) "
    "RETURNING version"
)
"""Delete only the live record of version $5 at $6; its version, or no row."""

_MIGRATION_LOCK = 0x6D6963726F5F7374  # "micro_st": serialises migrations across processes
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE SEQUENCE IF NOT EXISTS micro_store_version",
            f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            database text COLLATE "C" NOT NULL,
            tbl text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            rkey text COLLATE "C" NOT NULL,
            value bytea NOT NULL,
            metadata bytea,
            expiry double precision,
            version bigint NOT NULL,
            PRIMARY KEY (database, tbl, key))""",
            f"CREATE INDEX IF NOT EXISTS micro_store_records_rkey ON {TABLE} (database, tbl, rkey)",
            f"CREATE INDEX IF NOT EXISTS micro_store_records_expiry ON {TABLE} (expiry) "
            "WHERE expiry IS NOT NULL",
        ],
    ),
    (
        2,
        [  # the suffix index becomes partial: point lookups can only use the primary key
            "DROP INDEX IF EXISTS micro_store_records_rkey",
            f"CREATE INDEX micro_store_records_rkey ON {TABLE} (database, tbl, rkey) "
            "WHERE rkey IS NOT NULL",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The schema version this code writes (kept in ``micro_store_schema``)."""

_metadata_decoder = msgspec.json.Decoder(dict[str, str])


async def migrate(conn: asyncpg.Connection) -> None:
    """Create or upgrade the schema, once, whoever else is starting at the same time."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS micro_store_schema (version int NOT NULL)")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM micro_store_schema")
        if current > SCHEMA_VERSION:
            raise internal(
                ID, f"the database has store schema {current}, newer than {SCHEMA_VERSION}"
            )
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO micro_store_schema (version) VALUES ($1)", version)


def record(row: asyncpg.Record) -> Record:
    """The :class:`Record` of a row of ``COLUMNS``."""
    metadata = row["metadata"]
    return Record(
        row["key"],
        bytes(row["value"]),
        _metadata_decoder.decode(metadata) if metadata else {},
        row["expiry"],
        str(row["version"]),
    )


def lock_id(database: str, table: str, key: str) -> int:
    """The advisory lock of ``key`` (64 bits of a hash; a collision only serialises more)."""
    digest = hashlib.blake2b(f"{database}\0{table}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_keys(
    conn: asyncpg.Connection, database: str, table: str, keys: Sequence[str]
) -> None:
    """Take the advisory lock of every key until the transaction ends (sorted: no deadlock)."""
    ids = sorted({lock_id(database, table, key) for key in keys})
    if len(ids) == 1:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ids[0])
    elif ids:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(i)) FROM unnest($1::bigint[]) AS u(i)", ids
        )


async def versions(
    conn: asyncpg.Connection, database: str, table: str, keys: Sequence[str], now: float
) -> dict[str, str]:
    """The etags of the live records of ``keys``."""
    rows = await conn.fetch(VERSIONS, database, table, now, list(keys))
    return {row["key"]: str(row["version"]) for row in rows}


def scan(
    columns: str,
    database: str,
    table: str,
    prefix: str,
    suffix: str,
    order: Order,
    limit: int | None,
    offset: int,
    now: float,
) -> tuple[str, list[Any]]:
    """The query (and its arguments) of the live records of a table with ``prefix`` and
    ``suffix``, ordered by key, paged."""
    args: list[Any] = [database, table, now]
    where = ["database = $1", "tbl = $2", LIVE]
    for column, start in (("key", prefix), ("rkey", suffix[::-1])):
        if start:
            args.append(start)
            where.append(f"{column} >= ${len(args)}")
            upper = successor(start)
            if upper is not None:
                args.append(upper)
                where.append(f"{column} < ${len(args)}")
    query = f"SELECT {columns} FROM {TABLE} WHERE {' AND '.join(where)} ORDER BY key {order}"
    if limit is not None:
        args.append(limit)
        query += f" LIMIT ${len(args)}"
    if offset:
        args.append(offset)
        query += f" OFFSET ${len(args)}"
    return query, args
