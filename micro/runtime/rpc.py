"""The runtime as a client of the ``runtime`` service hosted by ``micro server``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..client import Client
from . import ServiceSpec, ServiceStatus
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

__all__ = ["RpcRuntime"]

SERVICE = "runtime"


class RpcRuntime:
    """Talks to the runtime service at ``address`` (``host:port`` of ``micro server``).

    ``timeout`` bounds each call; the default leaves room for the server to stop a process
    that takes its full grace period (10 s) before it is killed. ``update_timeout`` bounds
    an update, which replaces the instances one at a time (each may take the server's own
    update timeout, 30 s by default, to come up)."""

    def __init__(
        self, address: str, client: Client | None = None, timeout: float = 30.0,
        update_timeout: float = 600.0,
    ) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout
        self._update_timeout = update_timeout

    async def create(self, spec: ServiceSpec) -> None:
        """Run a new service."""
        await self._client.call(
            SERVICE, "Runtime.Create", CreateRequest(spec),
            address=self.address, timeout=self._timeout, response_type=Empty,
        )

    async def read(self, name: str | None = None) -> list[ServiceStatus]:
        """The status of one service or of all of them."""
        resp = await self._client.call(
            SERVICE, "Runtime.Read", ReadRequest(name),
            address=self.address, timeout=self._timeout, response_type=ReadResponse,
        )
        return resp.services

    async def update(self, spec: ServiceSpec) -> None:
        """Replace a service's processes, one at a time, by ones run from a new spec."""
        await self._client.call(
            SERVICE, "Runtime.Update", UpdateRequest(spec),
            address=self.address, timeout=self._update_timeout, response_type=Empty,
        )

    async def delete(self, name: str) -> None:
        """Stop and forget a service."""
        await self._client.call(
            SERVICE, "Runtime.Delete", DeleteRequest(name),
            address=self.address, timeout=self._timeout, response_type=Empty,
        )

    async def logs(self, name: str, lines: int = 100, follow: bool = False) -> AsyncIterator[str]:
        """A service's log lines, streamed from the server (followed until the caller stops
        iterating, when ``follow``)."""
        stream = self._client.stream(
            SERVICE, "Runtime.Logs", LogsRequest(name, lines, follow),
            address=self.address, response_type=LogLine,
            timeout=None if follow else self._timeout,
        )
        try:
            async for line in stream:
                yield line.text
        finally:
            await stream.close()

    async def start(self) -> None:
        """Nothing to do: the server runs the services."""

    async def close(self) -> None:
        """Close the connection to the server (the services keep running)."""
        if self._owns_client:
            await self._client.close()
