"""Store: key/value records in databases and tables (Micro v3's store, Dapr's state API).

A :class:`Record` is a key, a value (bytes), string metadata, an optional expiry and an
etag. Records live in *tables* inside *databases*; a service's own store is the database
of its namespace and the table of its name (:class:`~micro.store.scoped.ScopedStore`).

- **Reads** by key (``not_found`` when absent), or every record whose key starts
  (``prefix=True``) and/or ends (``suffix=True``) with the given key, ordered by key
  (``asc``/``desc``) with ``limit`` and ``offset``. :meth:`Store.read_many` reads many keys
  at once and leaves out the absent ones.
- **Writes** replace the whole record; ``ttl`` seconds make it expire. An expired record is
  never returned (reads compare its expiry with the store's clock) and is purged later.
- **Optimistic concurrency.** Every record carries an ``etag`` that changes on every write.
  A write or delete given ``etag`` happens only if the record still has it, a write given
  ``if_absent=True`` only if there is no (live) record; otherwise ``conflict`` (409). An
  empty etag means "no condition".
- **Transactions.** :meth:`Store.transact` applies a list of :data:`Op` to one table, in
  order, all or nothing: on a conflict nothing is applied and the error names the op.

Limits (``bad_request`` / ``too_large`` naming the field): database and table names match
``[A-Za-z0-9_.-]{1,128}``; keys are 1 to 1,024 bytes of UTF-8 without NUL; values at most
``max_value`` bytes (1 MiB by default, set per backend); metadata at most 16 KiB in all;
``ttl`` positive and finite; ``limit`` and ``offset`` non-negative; at most 1,000 keys per
bulk read and 1,000 ops per transaction.

Backends: :mod:`micro.store.memory` (in-process, injectable clock), :mod:`micro.store.sqlite`
(one durable file, group commit) and :mod:`micro.store.rpc` (the client of the ``store``
service that ``micro server`` hosts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_MAX_VALUE",
    "DEFAULT_TABLE",
    "MAX_BULK",
    "MAX_KEY",
    "MAX_METADATA",
    "MAX_NAME",
    "MAX_OPS",
    "DeleteOp",
    "Op",
    "Order",
    "Record",
    "Store",
    "WriteOp",
]

DEFAULT_DATABASE = "micro"
"""The database used when none is given (the default namespace)."""
DEFAULT_TABLE = "default"
"""The table used when none is given."""
MAX_KEY = 1024
"""Longest key, in bytes of UTF-8."""
MAX_NAME = 128
"""Longest database or table name."""
DEFAULT_MAX_VALUE = 1024 * 1024
"""Largest value by default, in bytes (backends take ``max_value=``)."""
MAX_METADATA = 16 * 1024
"""Largest metadata: the bytes of all its keys and values together."""
MAX_BULK = 1000
"""Most keys in one :meth:`Store.read_many`."""
MAX_OPS = 1000
"""Most ops in one :meth:`Store.transact`."""

Order = Literal["asc", "desc"]
"""The order of records in a read: by key, ascending or descending."""


class Record(msgspec.Struct, omit_defaults=True):
    """One stored value. ``expiry`` is a wall-clock instant (Unix seconds) or ``None`` for
    never; ``etag`` is opaque and changes on every write of the key."""

    key: str
    value: bytes = b""
    metadata: dict[str, str] = {}
    expiry: float | None = None
    etag: str = ""


class WriteOp(msgspec.Struct, tag="write", omit_defaults=True):
    """Write ``key`` in a transaction (same options as :meth:`Store.write`)."""

    key: str
    value: bytes = b""
    metadata: dict[str, str] = {}
    ttl: float | None = None
    etag: str | None = None
    if_absent: bool = False


class DeleteOp(msgspec.Struct, tag="delete", omit_defaults=True):
    """Delete ``key`` in a transaction (with ``etag``: only if it still matches)."""

    key: str
    etag: str | None = None


Op: TypeAlias = WriteOp | DeleteOp
"""One step of a transaction; on the wire ``{"type": "write"|"delete", ...}``."""


@runtime_checkable
class Store(Protocol):
    """What every store backend provides."""

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
        """The record ``key`` (``not_found`` if absent), or with ``prefix``/``suffix`` every
        record whose key starts/ends with ``key``, ordered, after ``offset``, at most ``limit``."""
        ...

    async def read_many(self, database: str, table: str, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order of ``keys``."""
        ...

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
        """Store ``value`` under ``key`` (expiring ``ttl`` s from now); return the record
        with its new etag. ``conflict`` if ``etag`` no longer matches, or with ``if_absent``
        if the key exists."""
        ...

    async def delete(
        self, database: str, table: str, key: str, *, etag: str | None = None
    ) -> None:
        """Remove ``key`` (absent is fine); with ``etag``, ``conflict`` unless it matches."""
        ...

    async def transact(self, database: str, table: str, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none; return the records written, in op order."""
        ...

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
        """Keys of live records that start with ``prefix`` and end with ``suffix``."""
        ...

    async def list_databases(self) -> list[str]:
        """Databases holding at least one live record, sorted."""
        ...

    async def list_tables(self, database: str) -> list[str]:
        """Tables of ``database`` holding at least one live record, sorted."""
        ...

    async def close(self) -> None:
        """Release files, threads, connections and background tasks."""
        ...
