"""The ``runtime`` RPC service: a thin layer over whichever runtime backend runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..context import Context
from . import Runtime
from .messages import (
    CreateRequest,
    DeleteRequest,
    Empty,
    LogLine,
    LogsRequest,
    ReadRequest,
    ReadResponse,
    UpdateRequest,
)

__all__ = ["RuntimeHandler"]


class RuntimeHandler:
    """Serves ``Runtime.Create``, ``Read``, ``Update``, ``Delete`` and ``Logs`` (a server
    stream of log lines)."""

    def __init__(self, backend: Runtime) -> None:
        self._backend = backend

    async def create(self, ctx: Context, req: CreateRequest) -> Empty:
        """Run a new service."""
        await self._backend.create(req.service)
        return Empty()

    async def read(self, ctx: Context, req: ReadRequest) -> ReadResponse:
        """The status of one service or of all of them."""
        return ReadResponse(await self._backend.read(req.name))

    async def update(self, ctx: Context, req: UpdateRequest) -> Empty:
        """Replace a service's processes by ones run from a new spec (rolling)."""
        await self._backend.update(req.service)
        return Empty()

    async def delete(self, ctx: Context, req: DeleteRequest) -> Empty:
        """Stop and forget a service."""
        await self._backend.delete(req.name)
        return Empty()

    async def logs(self, ctx: Context, req: LogsRequest) -> AsyncIterator[LogLine]:
        """A service's log lines, followed while the caller listens when asked to."""
        lines = self._backend.logs(req.name, req.lines, req.follow)
        try:
            async for text in lines:
                yield LogLine(text)
        finally:
            aclose = getattr(lines, "aclose", None)
            if aclose is not None:  # stop following now, not when collected
                await aclose()
