"""The ``registry`` RPC service: a thin layer over whichever registry backend runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..context import Context
from . import Event, Registry
from .messages import (
    Empty,
    GetServiceRequest,
    RegisterRequest,
    ServiceRequest,
    ServicesResponse,
    WatchRequest,
)

__all__ = ["RegistryHandler"]


class RegistryHandler:
    """Serves ``Registry.Register``, ``Deregister``, ``GetService``, ``ListServices`` and
    ``Watch`` (a server stream of events)."""

    def __init__(self, backend: Registry) -> None:
        self._backend = backend

    async def register(self, ctx: Context, req: RegisterRequest) -> Empty:
        """Add or refresh a service's nodes."""
        await self._backend.register(req.service, req.ttl)
        return Empty()

    async def deregister(self, ctx: Context, req: ServiceRequest) -> Empty:
        """Remove a service's nodes."""
        await self._backend.deregister(req.service)
        return Empty()

    async def get_service(self, ctx: Context, req: GetServiceRequest) -> ServicesResponse:
        """Every live version of one service."""
        return ServicesResponse(await self._backend.get_service(req.name))

    async def list_services(self, ctx: Context, req: Empty) -> ServicesResponse:
        """Every live service."""
        return ServicesResponse(await self._backend.list_services())

    async def watch(self, ctx: Context, req: WatchRequest) -> AsyncIterator[Event]:
        """Every change from now on."""
        async for event in self._backend.watch(req.service):
            yield event
