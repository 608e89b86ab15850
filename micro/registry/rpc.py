"""The registry as a client of the ``registry`` service hosted by ``micro server``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from ssl import SSLContext

from ..client import Client
from ..transport.client import ConnectionPool
from . import Event, ServiceInfo
from .messages import (
    Empty,
    GetServiceRequest,
    RegisterRequest,
    ServiceRequest,
    ServicesResponse,
    WatchRequest,
)

__all__ = ["RpcRegistry"]

SERVICE = "registry"


class RpcRegistry:
    """Talks to the registry service at ``address`` (``host:port`` of ``micro server``)."""

    def __init__(
        self,
        address: str,
        client: Client | None = None,
        timeout: float = 5.0,
        credentials: Callable[[], str | None] | None = None,
        ssl: Callable[[], SSLContext] | None = None,
    ) -> None:
        self.address = address
        pool = ConnectionPool(ssl=ssl) if ssl is not None else None
        self._client = client or Client(credentials=credentials, pool=pool)
        self._owns_client = client is None
        self._timeout = timeout

    async def register(self, service: ServiceInfo, ttl: float | None = None) -> None:
        """Add or refresh ``service``'s nodes."""
        await self._client.call(
            SERVICE,
            "Registry.Register",
            RegisterRequest(service, ttl),
            address=self.address,
            timeout=self._timeout,
            response_type=Empty,
        )

    async def deregister(self, service: ServiceInfo) -> None:
        """Remove ``service``'s nodes."""
        await self._client.call(
            SERVICE,
            "Registry.Deregister",
            ServiceRequest(service),
            address=self.address,
            timeout=self._timeout,
            response_type=Empty,
        )

    async def get_service(self, name: str) -> list[ServiceInfo]:
        """Every live version of ``name``."""
        resp = await self._client.call(
            SERVICE,
            "Registry.GetService",
            GetServiceRequest(name),
            address=self.address,
            timeout=self._timeout,
            response_type=ServicesResponse,
        )
        return resp.services

    async def list_services(self) -> list[ServiceInfo]:
        """Every live service version."""
        resp = await self._client.call(
            SERVICE,
            "Registry.ListServices",
            Empty(),
            address=self.address,
            timeout=self._timeout,
            response_type=ServicesResponse,
        )
        return resp.services

    async def watch(self, service: str | None = None) -> AsyncIterator[Event]:
        """Changes from now on, streamed from the server."""
        stream = self._client.stream(
            SERVICE,
            "Registry.Watch",
            WatchRequest(service),
            address=self.address,
            response_type=Event,
        )
        try:
            async for event in stream:
                yield event
        finally:
            await stream.close()

    async def close(self) -> None:
        """Close the connection to the server."""
        if self._owns_client:
            await self._client.close()
