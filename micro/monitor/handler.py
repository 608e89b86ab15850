"""The ``monitor`` RPC service: a thin layer over a running :class:`Monitor`."""

from __future__ import annotations

from ..context import Context
from .messages import (
    AddRequest,
    ChecksResponse,
    Empty,
    HealthResponse,
    HistoryRequest,
    HistoryResponse,
    RemoveRequest,
)
from .monitor import Monitor

__all__ = ["MonitorHandler"]


class MonitorHandler:
    """Serves ``Monitor.Checks``, ``Add``, ``Remove``, ``History`` and ``Health``."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    async def checks(self, ctx: Context, req: Empty) -> ChecksResponse:
        """Every check with its latest result."""
        return ChecksResponse(self._monitor.checks())

    async def add(self, ctx: Context, req: AddRequest) -> Empty:
        """Add a check; it first runs on the monitor's next tick."""
        await self._monitor.add(req.check)
        return Empty()

    async def remove(self, ctx: Context, req: RemoveRequest) -> Empty:
        """Remove a check and its history."""
        await self._monitor.remove(req.name)
        return Empty()

    async def history(self, ctx: Context, req: HistoryRequest) -> HistoryResponse:
        """A check's newest results, newest first."""
        return HistoryResponse(self._monitor.history(req.name, req.limit))

    async def health(self, ctx: Context, req: Empty) -> HealthResponse:
        """Every node the monitor knows, with its state and last latency."""
        return HealthResponse(self._monitor.health())
