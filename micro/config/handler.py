"""The ``config`` RPC service: a thin layer over whichever config backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), a caller confined to namespace ``N``
may get, set, delete and watch the config of namespace ``N`` only; any other namespace is
``forbidden``. Unrestricted callers (admins of ``micro``) and handlers with ``tenancy`` off
reach every namespace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..auth.tenancy import check_same
from ..context import Context
from ..service.endpoint import idempotent
from . import Config
from .messages import (
    DeleteRequest,
    Empty,
    GetRequest,
    GetResponse,
    SetRequest,
    WatchEvent,
    WatchRequest,
)

__all__ = ["ConfigHandler"]


class ConfigHandler:
    """Serves ``Config.Get``, ``Set``, ``Delete`` and ``Watch`` (a server stream that starts
    with ``{ready: true}`` once subscribed, then sends one ``{change}`` per change).
    ``tenancy``: confine each caller to the config of its namespace."""

    def __init__(self, backend: Config, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _check(self, ctx: Context, namespace: str) -> None:
        if self.tenancy:
            check_same(ctx, namespace, "config")

    @idempotent
    async def get(self, ctx: Context, req: GetRequest) -> GetResponse:
        """The value at a path."""
        self._check(ctx, req.namespace)
        return GetResponse(await self._backend.get(req.namespace, req.path, req.secrets))

    async def set(self, ctx: Context, req: SetRequest) -> Empty:
        """Merge or replace the value at a path."""
        self._check(ctx, req.namespace)
        await self._backend.set(req.namespace, req.path, req.value, req.secret)
        return Empty()

    async def delete(self, ctx: Context, req: DeleteRequest) -> Empty:
        """Remove the value at a path."""
        self._check(ctx, req.namespace)
        await self._backend.delete(req.namespace, req.path)
        return Empty()

    async def watch(self, ctx: Context, req: WatchRequest) -> AsyncIterator[WatchEvent]:
        """Changes at or under a path, from the moment ``{ready: true}`` is sent."""
        self._check(ctx, req.namespace)
        changes = self._backend.watch(req.namespace, req.path)
        try:
            yield WatchEvent(ready=True)
            async for change in changes:
                yield WatchEvent(change=change)
        finally:
            aclose = getattr(changes, "aclose", None)
            if aclose is not None:
                await aclose()
