"""The store as a client of the ``store`` service hosted by ``micro server``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ..client import Client
from . import Op, Order, Record, WriteOp
from .messages import (
    DatabasesResponse,
    DeleteRequest,
    Empty,
    KeysResponse,
    ListRequest,
    ReadManyRequest,
    ReadRequest,
    RecordsResponse,
    TablesRequest,
    TablesResponse,
    TransactRequest,
    TransactResponse,
    WriteRequest,
    Written,
)

__all__ = ["RpcStore"]

SERVICE = "store"

T = TypeVar("T")


class RpcStore:
    """Talks to the store service at ``address`` (``host:port`` of ``micro server``).
    Validation and limits are the server's: errors come back as they were raised there."""

    def __init__(self, address: str, client: Client | None = None, timeout: float = 10.0) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout

    async def _call(self, endpoint: str, request: Any, response_type: type[T]) -> T:
        return await self._client.call(
            SERVICE, endpoint, request, response_type=response_type,
            address=self.address, timeout=self._timeout,
        )

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
        request = ReadRequest(key, database, table, prefix, suffix, limit, offset, order)
        response = await self._client.call(  # not through _call: the hot path, one frame less
            SERVICE, "Store.Read", request, response_type=RecordsResponse,
            address=self.address, timeout=self._timeout,
        )
        return response.records

    async def read_many(self, database: str, table: str, keys: Sequence[str]) -> list[Record]:
        """The records of ``keys`` that exist, in the order asked."""
        request = ReadManyRequest(list(keys), database, table)
        return (await self._call("Store.ReadMany", request, RecordsResponse)).records

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
        metadata = dict(metadata or {})
        request = WriteRequest(key, value, database, table, metadata, ttl, etag, if_absent)
        written = await self._call("Store.Write", request, Written)
        return Record(key, value, metadata, written.expiry, written.etag)

    async def delete(
        self, database: str, table: str, key: str, *, etag: str | None = None
    ) -> None:
        """Remove ``key``; with ``etag`` only if it still matches."""
        await self._call("Store.Delete", DeleteRequest(key, database, table, etag), Empty)

    async def transact(self, database: str, table: str, ops: Sequence[Op]) -> list[Record]:
        """Apply ``ops`` in order, all or none."""
        request = TransactRequest(list(ops), database, table)
        written = (await self._call("Store.Transact", request, TransactResponse)).written
        writes = [op for op in ops if isinstance(op, WriteOp)]
        return [
            Record(op.key, op.value, dict(op.metadata), w.expiry, w.etag)
            for op, w in zip(writes, written, strict=True)
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
        request = ListRequest(database, table, prefix, suffix, limit, offset, order)
        return (await self._call("Store.List", request, KeysResponse)).keys

    async def list_databases(self) -> list[str]:
        """Databases with a live record."""
        return (await self._call("Store.Databases", Empty(), DatabasesResponse)).databases

    async def list_tables(self, database: str) -> list[str]:
        """Tables of ``database`` with a live record."""
        return (await self._call("Store.Tables", TablesRequest(database), TablesResponse)).tables

    async def close(self) -> None:
        """Close the connection to the server (when this store made the client)."""
        if self._owns_client:
            await self._client.close()
