"""The ``store`` RPC service: a thin layer over whichever store backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), a caller confined to namespace ``N``
may use database ``N`` only (a service's own store, :class:`~micro.store.scoped.ScopedStore`,
already is database = its namespace); any other database is ``forbidden``, and
``Store.Databases`` lists ``N`` alone (when it has live records). Unrestricted callers (admins
of ``micro``) and handlers with ``tenancy`` off see every database.
"""

from __future__ import annotations

from ..auth.tenancy import caller_namespace, check_same
from ..context import Context
from ..service.endpoint import idempotent
from . import Store
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

__all__ = ["StoreHandler"]


class StoreHandler:
    """Serves ``Store.Read``, ``ReadMany``, ``Write``, ``Delete``, ``Transact``, ``List``,
    ``Databases`` and ``Tables``. Reads are marked idempotent (safe to retry). ``tenancy``:
    confine each caller to the database of its namespace."""

    def __init__(self, backend: Store, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _check(self, ctx: Context, database: str) -> None:
        if self.tenancy:
            check_same(ctx, database, "database")

    @idempotent
    async def read(self, ctx: Context, req: ReadRequest) -> RecordsResponse:
        """One record by key, or the records of a prefix/suffix."""
        self._check(ctx, req.database)
        return RecordsResponse(
            await self._backend.read(
                req.database,
                req.table,
                req.key,
                prefix=req.prefix,
                suffix=req.suffix,
                limit=req.limit,
                offset=req.offset,
                order=req.order,
            )
        )

    @idempotent
    async def read_many(self, ctx: Context, req: ReadManyRequest) -> RecordsResponse:
        """The records of many keys."""
        self._check(ctx, req.database)
        return RecordsResponse(await self._backend.read_many(req.database, req.table, req.keys))

    async def write(self, ctx: Context, req: WriteRequest) -> Written:
        """Write one record."""
        self._check(ctx, req.database)
        record = await self._backend.write(
            req.database,
            req.table,
            req.key,
            req.value,
            metadata=req.metadata,
            ttl=req.ttl,
            etag=req.etag,
            if_absent=req.if_absent,
        )
        return Written(record.etag, record.expiry)

    async def delete(self, ctx: Context, req: DeleteRequest) -> Empty:
        """Delete one record."""
        self._check(ctx, req.database)
        await self._backend.delete(req.database, req.table, req.key, etag=req.etag)
        return Empty()

    async def transact(self, ctx: Context, req: TransactRequest) -> TransactResponse:
        """Apply ops atomically."""
        self._check(ctx, req.database)
        records = await self._backend.transact(req.database, req.table, req.ops)
        return TransactResponse([Written(r.etag, r.expiry) for r in records])

    @idempotent
    async def databases(self, ctx: Context, req: Empty) -> DatabasesResponse:
        """Databases with live records (only the caller's own, with tenancy)."""
        databases = await self._backend.list_databases()
        if self.tenancy and (mine := caller_namespace(ctx)) is not None:
            databases = [d for d in databases if d == mine]
        return DatabasesResponse(databases)

    @idempotent
    async def tables(self, ctx: Context, req: TablesRequest) -> TablesResponse:
        """Tables of a database with live records."""
        self._check(ctx, req.database)
        return TablesResponse(await self._backend.list_tables(req.database))

    @idempotent
    async def list(self, ctx: Context, req: ListRequest) -> KeysResponse:
        """Keys of live records."""
        self._check(ctx, req.database)
        return KeysResponse(
            await self._backend.list_keys(
                req.database,
                req.table,
                prefix=req.prefix,
                suffix=req.suffix,
                limit=req.limit,
                offset=req.offset,
                order=req.order,
            )
        )
