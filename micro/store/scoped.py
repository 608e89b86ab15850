"""One table of a store, with typed helpers: what a service sees as ``service.store``.

::

    store = ScopedStore(backend, "micro", "helloworld")
    await store.write("user:1", User(name="Alice"), ttl=3600)   # JSON-encoded
    user = await store.value("user:1", User)
    await store.write("greeting", "hello")                      # UTF-8
    text = await store.value("greeting", str)

Values are stored as bytes: ``bytes`` as they are, ``str`` as UTF-8, anything else (a
``msgspec.Struct``, dataclass, dict, list, number, ...) as JSON. :meth:`ScopedStore.value`
reverses this for the type it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from ..errors import bad_request
from . import Op, Order, Record, Store
from ._validate import ID

__all__ = ["ScopedStore", "decode_value", "encode_value"]

T = TypeVar("T")

_json = msgspec.json.Encoder()


def encode_value(value: Any) -> bytes:
    """``bytes`` as is, ``str`` as UTF-8, anything else as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    try:
        return _json.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_request(ID, f"cannot encode a {type(value).__name__} as JSON: {exc}") from None


def decode_value(data: bytes, type: type[T], key: str = "") -> T:
    """The inverse of :func:`encode_value` for ``type``."""
    if type is bytes:
        return data  # type: ignore[return-value]
    try:
        if type is str:
            return data.decode()  # type: ignore[return-value]
        return msgspec.json.decode(data, type=type)
    except (UnicodeDecodeError, msgspec.DecodeError) as exc:
        name = getattr(type, "__name__", repr(type))
        raise bad_request(ID, f"value of key {key!r} is not a valid {name}: {exc}") from None


class ScopedStore:
    """The table ``table`` of database ``database`` in ``backend``: the operations of
    :class:`~micro.store.Store` without the database and table arguments."""

    def __init__(self, backend: Store, database: str, table: str) -> None:
        self.backend = backend
        self.database = database
        self.table = table

    def __repr__(self) -> str:
        return f"ScopedStore({self.database}/{self.table})"

    async def read(
        self,
        key: str,
        *,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order: Order = "asc",
    ) -> list[Record]:
        """The record ``key`` (``not_found`` if absent), or the records whose key
        starts/ends with ``key``."""
        return await self.backend.read(
            self.database, self.table, key, prefix=prefix, suffix=suffix, limit=limit,
            offset=offset, order=order,
        )

    async def read_one(self, key: str) -> Record:
        """The record ``key``; ``not_found`` if absent."""
        return (await self.backend.read(self.database, self.table, key))[0]

    async def value(self, key: str, type: type[T]) -> T:
        """The value of ``key`` decoded as ``type`` (``bytes``, ``str``, or JSON into any
        type msgspec knows); ``not_found`` if absent, ``bad_request`` if it does not fit."""
        record = await self.read_one(key)
        return decode_value(record.value, type, key)

    async def read_many(self, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order asked."""
        return await self.backend.read_many(self.database, self.table, keys)

    async def write(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        metadata: dict[str, str] | None = None,
        etag: str | None = None,
        if_absent: bool = False,
    ) -> Record:
        """Store ``value`` (bytes, str, or anything JSON-encodable) under ``key``; return the
        record with its new etag."""
        return await self.backend.write(
            self.database, self.table, key, encode_value(value), metadata=metadata, ttl=ttl,
            etag=etag, if_absent=if_absent,
        )

    async def delete(self, key: str, *, etag: str | None = None) -> None:
        """Remove ``key`` (absent is fine); with ``etag`` only if it still matches."""
        await self.backend.delete(self.database, self.table, key, etag=etag)

    async def transact(self, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none; return the records written."""
        return await self.backend.transact(self.database, self.table, ops)

    async def list_keys(
        self,
        *,
        prefix: str = "",
        suffix: str = "",
        limit: int | None = None,
        offset: int = 0,
        order: Order = "asc",
    ) -> list[str]:
        """Keys of live records with ``prefix`` and ``suffix``."""
        return await self.backend.list_keys(
            self.database, self.table, prefix=prefix, suffix=suffix, limit=limit,
            offset=offset, order=order,
        )
