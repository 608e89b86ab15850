"""Request and response types of the ``store`` RPC service.

Every request names its ``database`` and ``table`` (defaults: ``micro`` and ``default``).
"""

from __future__ import annotations

import msgspec

from . import DEFAULT_DATABASE, DEFAULT_TABLE, Op, Order, Record

__all__ = [
    "DatabasesResponse",
    "DeleteRequest",
    "Empty",
    "KeysResponse",
    "ListRequest",
    "ReadManyRequest",
    "ReadRequest",
    "RecordsResponse",
    "TablesRequest",
    "TablesResponse",
    "TransactRequest",
    "TransactResponse",
    "WriteRequest",
    "Written",
]


class Empty(msgspec.Struct):
    """No fields."""


class ReadRequest(msgspec.Struct, omit_defaults=True):
    """Read ``key``, or with ``prefix``/``suffix`` every key that starts/ends with it."""

    key: str = ""
    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE
    prefix: bool = False
    suffix: bool = False
    limit: int | None = None
    offset: int = 0
    order: Order = "asc"


class ReadManyRequest(msgspec.Struct, omit_defaults=True):
    """Read many keys at once."""

    keys: list[str]
    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE


class RecordsResponse(msgspec.Struct):
    """Records found."""

    records: list[Record] = []


class WriteRequest(msgspec.Struct, omit_defaults=True):
    """Write one record (``ttl`` in seconds; ``etag`` / ``if_absent`` make it conditional)."""

    key: str
    value: bytes = b""
    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE
    metadata: dict[str, str] = {}
    ttl: float | None = None
    etag: str | None = None
    if_absent: bool = False


class Written(msgspec.Struct, omit_defaults=True):
    """What a write produced: the new etag and the expiry."""

    etag: str
    expiry: float | None = None


class DeleteRequest(msgspec.Struct, omit_defaults=True):
    """Delete one record (with ``etag``: only if it still matches)."""

    key: str
    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE
    etag: str | None = None


class TransactRequest(msgspec.Struct, omit_defaults=True):
    """Apply ``ops`` to one table, in order, all or nothing."""

    ops: list[Op]
    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE


class TransactResponse(msgspec.Struct):
    """One :class:`Written` per write op, in op order."""

    written: list[Written] = []


class ListRequest(msgspec.Struct, omit_defaults=True):
    """List keys of live records with ``prefix`` and ``suffix``."""

    database: str = DEFAULT_DATABASE
    table: str = DEFAULT_TABLE
    prefix: str = ""
    suffix: str = ""
    limit: int | None = None
    offset: int = 0
    order: Order = "asc"


class KeysResponse(msgspec.Struct):
    """Keys found."""

    keys: list[str] = []


class DatabasesResponse(msgspec.Struct):
    """Databases with live records."""

    databases: list[str] = []


class TablesRequest(msgspec.Struct, omit_defaults=True):
    """The tables of one database."""

    database: str = DEFAULT_DATABASE


class TablesResponse(msgspec.Struct):
    """Tables with live records."""

    tables: list[str] = []
