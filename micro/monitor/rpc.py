"""The client of the ``monitor`` service hosted by ``micro server`` (used by the CLI)."""

from __future__ import annotations

from typing import Any, TypeVar

from ..client import Client
from . import Check, CheckResult, CheckStatus, NodeHealth
from .messages import (
    AddRequest,
    ChecksResponse,
    Empty,
    HealthResponse,
    HistoryRequest,
    HistoryResponse,
    RemoveRequest,
)

__all__ = ["RpcMonitor"]

SERVICE = "monitor"
T = TypeVar("T")


class RpcMonitor:
    """Talks to the monitor service at ``address`` (``host:port`` of ``micro server``)."""

    def __init__(self, address: str, client: Client | None = None, timeout: float = 10.0) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout

    async def _call(self, endpoint: str, req: Any, response_type: type[T]) -> T:
        return await self._client.call(
            SERVICE,
            f"Monitor.{endpoint}",
            req,
            address=self.address,
            timeout=self._timeout,
            response_type=response_type,
        )

    async def checks(self) -> list[CheckStatus]:
        """Every check with its latest result."""
        return (await self._call("Checks", Empty(), ChecksResponse)).checks

    async def add(self, check: Check) -> None:
        """Add a check."""
        await self._call("Add", AddRequest(check), Empty)

    async def remove(self, name: str) -> None:
        """Remove a check and its history."""
        await self._call("Remove", RemoveRequest(name), Empty)

    async def history(self, name: str, limit: int = 20) -> list[CheckResult]:
        """A check's newest results, newest first."""
        return (await self._call("History", HistoryRequest(name, limit), HistoryResponse)).results

    async def health(self) -> list[NodeHealth]:
        """Every node the monitor knows."""
        return (await self._call("Health", Empty(), HealthResponse)).nodes

    async def close(self) -> None:
        """Close the client if this object made it."""
        if self._owns_client:
            await self._client.close()
