"""The SQLite schema and the queries of :mod:`micro.store.sqlite`, run in worker threads.

Every record of every database and table is a row of one table, ``records``, unique on
``(database, table, key)``. Prefix scans are ranges of that index (``key >= prefix AND key <
successor(prefix)``); suffix scans are ranges of a second index on the reversed key
(``rkey``). ``version`` comes from one counter per file (kept in ``meta``), so an etag is
never reused, not even after the key was deleted and written again.

Functions taking ``conn`` last are jobs: the store binds the other arguments with
:func:`functools.partial` and a worker thread calls them with its connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import MicroError
from . import Order, Record
from ._rules import check_condition, in_transaction, successor

__all__ = ["Versions", "connect", "init"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    database TEXT NOT NULL,
    "table" TEXT NOT NULL,
    key TEXT NOT NULL,
    rkey TEXT NOT NULL,
    value BLOB NOT NULL,
    metadata BLOB,
    expiry REAL,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records (database, "table", key);
CREATE INDEX IF NOT EXISTS records_rkey ON records (database, "table", rkey);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expiry) WHERE expiry IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('version', 0);
"""

_COLUMNS = "key, value, metadata, expiry, version"
_TABLE = 'database = ? AND "table" = ?'
_LIVE = "(expiry IS NULL OR expiry > ?)"
_UPSERT = (
    'INSERT INTO records (database, "table", key, rkey, value, metadata, expiry, version) '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (database, "table", key) DO UPDATE SET '
    "rkey = excluded.rkey, value = excluded.value, metadata = excluded.metadata, "
    "expiry = excluded.expiry, version = excluded.version"
)
_metadata_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(dict[str, str])


def connect(path: str, *, writer: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (the workers open transactions themselves)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    if writer:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
    else:
        conn.execute("PRAGMA query_only = ON")
    return conn


class Versions:
    """The version counter of a file, owned by the writer thread. Batches take versions
    with :meth:`next`; :meth:`save` stores the last one in the batch's transaction."""

    def __init__(self) -> None:
        self.last = 0
        self._saved = 0

    def load(self, conn: sqlite3.Connection) -> None:
        """Read the counter (in the writer, at start)."""
        self.last = self._saved = conn.execute(
            "SELECT value FROM meta WHERE name = 'version'"
        ).fetchone()[0]

    def next(self) -> int:
        """A version never handed out before."""
        self.last += 1
        return self.last

    def save(self, conn: sqlite3.Connection) -> None:
        """Store the counter, if it moved (in the batch's transaction, before COMMIT)."""
        if self.last != self._saved:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'version'", (self.last,))
            self._saved = self.last


def init(versions: Versions, conn: sqlite3.Connection) -> None:
    """Create the schema (in the writer's transaction) and load the version counter."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    versions.load(conn)


def encode_metadata(metadata: dict[str, str] | None) -> bytes | None:
    """Metadata as stored (NULL when empty)."""
    return _metadata_encoder.encode(metadata) if metadata else None


def _record(row: tuple[Any, ...]) -> Record:
    key, value, metadata, expiry, version = row
    if metadata:
        return Record(key, value, _metadata_decoder.decode(metadata), expiry, str(version))
    return Record(key, value, expiry=expiry, etag=str(version))


# -- reads -------------------------------------------------------------------------------------


def read_key(database: str, table: str, key: str, conn: sqlite3.Connection) -> Record | None:
    """The record ``key`` (expired or not; the caller checks), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM records WHERE {_TABLE} AND key = ?", (database, table, key)
    ).fetchone()
    return None if row is None else _record(row)


def read_keys(
    database: str, table: str, keys: Sequence[str], conn: sqlite3.Connection
) -> dict[str, Record]:
    """The records of ``keys`` that exist (expired or not; the caller checks)."""
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM records WHERE {_TABLE} AND key IN ({marks})",
        (database, table, *keys),
    )
    return {row[0]: _record(row) for row in rows}


def _range(
    column: str, start: str, where: list[str], params: list[Any]
) -> None:
    """Restrict ``column`` to strings starting with ``start``."""
    where.append(f"{column} >= ?")
    params.append(start)
    upper = successor(start)
    if upper is not None:
        where.append(f"{column} < ?")
        params.append(upper)


def _scan_sql(
    columns: str, database: str, table: str, prefix: str, suffix: str, order: Order,
    limit: int | None, offset: int, now: float,
) -> tuple[str, list[Any]]:
    where = [_TABLE, _LIVE]
    params: list[Any] = [database, table, now]
    if prefix:
        _range("key", prefix, where, params)
    if suffix:
        _range("rkey", suffix[::-1], where, params)
    direction = "DESC" if order == "desc" else "ASC"
    params += [-1 if limit is None else limit, offset]
    sql = (
        f"SELECT {columns} FROM records WHERE {' AND '.join(where)} "
        f"ORDER BY key {direction} LIMIT ? OFFSET ?"
    )
    return sql, params


def scan(
    database: str, table: str, prefix: str, suffix: str, order: Order, limit: int | None,
    offset: int, now: float, conn: sqlite3.Connection,
) -> list[Record]:
    """Live records whose key starts with ``prefix`` and ends with ``suffix``."""
    sql, params = _scan_sql(_COLUMNS, database, table, prefix, suffix, order, limit, offset, now)
    return [_record(row) for row in conn.execute(sql, params)]


def scan_keys(
    database: str, table: str, prefix: str, suffix: str, order: Order, limit: int | None,
    offset: int, now: float, conn: sqlite3.Connection,
) -> list[str]:
    """Keys of live records that start with ``prefix`` and end with ``suffix``."""
    sql, params = _scan_sql("key", database, table, prefix, suffix, order, limit, offset, now)
    return [row[0] for row in conn.execute(sql, params)]


def databases(now: float, conn: sqlite3.Connection) -> list[str]:
    """Databases with a live record: one index seek per database (a skip scan)."""
    found: list[str] = []
    while True:
        row = conn.execute(
            f"SELECT database FROM records WHERE database > ? AND {_LIVE} "
            "ORDER BY database LIMIT 1",
            (found[-1] if found else "", now),
        ).fetchone()
        if row is None:
            return found
        found.append(row[0])


def tables(database: str, now: float, conn: sqlite3.Connection) -> list[str]:
    """Tables of ``database`` with a live record (a skip scan)."""
    found: list[str] = []
    while True:
        row = conn.execute(
            f'SELECT "table" FROM records WHERE database = ? AND "table" > ? AND {_LIVE} '
            'ORDER BY "table" LIMIT 1',
            (database, found[-1] if found else "", now),
        ).fetchone()
        if row is None:
            return found
        found.append(row[0])


# -- writes (in the writer's transaction) ------------------------------------------------------


def _current(
    conn: sqlite3.Connection, database: str, table: str, key: str, now: float
) -> str | None:
    row = conn.execute(
        f"SELECT version FROM records WHERE {_TABLE} AND key = ? AND {_LIVE}",
        (database, table, key, now),
    ).fetchone()
    return None if row is None else str(row[0])


def write(
    versions: Versions, database: str, table: str, key: str, value: bytes,
    metadata: bytes | None, expiry: float | None, etag: str | None, if_absent: bool,
    now: float, conn: sqlite3.Connection,
) -> str:
    """Upsert one record (checking ``etag`` / ``if_absent``); return its new etag."""
    if etag or if_absent:
        check_condition(_current(conn, database, table, key, now), key, etag, if_absent)
    version = versions.next()
    conn.execute(
        _UPSERT, (database, table, key, key[::-1], value, metadata, expiry, version)
    )
    return str(version)


def delete(
    database: str, table: str, key: str, etag: str | None, now: float,
    conn: sqlite3.Connection,
) -> None:
    """Remove one record (checking ``etag``)."""
    if etag:
        check_condition(_current(conn, database, table, key, now), key, etag, False)
    conn.execute(f"DELETE FROM records WHERE {_TABLE} AND key = ?", (database, table, key))


Prepared = tuple[str, bytes | None, bytes | None, float | None, str | None, bool]
"""An op ready for :func:`transact`: key, value (None: delete), metadata, expiry, etag,
if_absent."""


def transact(
    versions: Versions, database: str, table: str, ops: Sequence[Prepared], now: float,
    conn: sqlite3.Connection,
) -> list[str]:
    """Apply ``ops`` in order (the worker's savepoint undoes them all on a conflict);
    return the etags of the writes."""
    etags: list[str] = []
    for i, (key, value, metadata, expiry, etag, if_absent) in enumerate(ops):
        try:
            if value is None:
                delete(database, table, key, etag, now, conn)
            else:
                etags.append(
                    write(versions, database, table, key, value, metadata, expiry, etag,
                          if_absent, now, conn)
                )
        except MicroError as err:
            raise in_transaction(i, "delete" if value is None else "write", key, err) from None
    return etags


def purge(now: float, limit: int, conn: sqlite3.Connection) -> int:
    """Delete up to ``limit`` expired records; return how many went."""
    cursor = conn.execute(
        "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records "
        "WHERE expiry IS NOT NULL AND expiry <= ? LIMIT ?)",
        (now, limit),
    )
    return cursor.rowcount
