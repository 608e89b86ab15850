"""The ``registry`` RPC service: a thin layer over whichever registry backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), service names are namespaced
transparently. A service ``greeter`` registered by a caller confined to namespace ``acme``
is stored as ``qualified("acme", "greeter")`` = ``"acme/greeter"``; ``GetService``,
``ListServices`` and ``Watch`` show a caller of ``acme`` only the services of ``acme``, by
their plain names, so services of a namespace find each other as if alone. Services of
``micro`` are stored unprefixed, and callers of ``micro`` (anonymous ones included) see only
those. A confined caller may not use ``/`` in a service name (it could not be valid anyway).
Unrestricted callers (admins of ``micro``) and handlers with ``tenancy`` off see every
service as stored, prefixed names included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from ..auth.tenancy import SEP, caller_namespace, qualified, split
from ..context import Context
from ..errors import MicroError, bad_request
from ..service.endpoint import public
from . import Event, Registry, ServiceInfo
from .messages import (
    Empty,
    GetServiceRequest,
    RegisterRequest,
    ServiceRequest,
    ServicesResponse,
    WatchRequest,
)

__all__ = ["RegistryHandler", "qualified"]

ID = "registry"


class RegistryHandler:
    """Serves ``Registry.Register``, ``Deregister``, ``GetService``, ``ListServices`` and
    ``Watch`` (a server stream of events). ``tenancy``: keep each caller's namespace apart."""

    def __init__(self, backend: Registry, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _namespace(self, ctx: Context) -> str | None:
        """The namespace the caller is confined to; None: sees names as stored."""
        return caller_namespace(ctx) if self.tenancy else None

    @staticmethod
    def _stored(namespace: str | None, name: str) -> str:
        if namespace is None:
            return name
        if SEP in name:
            raise bad_request(ID, f"service name {name!r} must not contain {SEP!r}")
        return qualified(namespace, name)

    @staticmethod
    def _shown(namespace: str, service: ServiceInfo) -> ServiceInfo | None:
        """``service`` as a caller of ``namespace`` sees it; None if not its own."""
        owner, name = split(service.name)
        if owner != namespace:
            return None
        return msgspec.structs.replace(service, name=name)

    def _inward(self, namespace: str | None, service: ServiceInfo) -> ServiceInfo:
        stored = self._stored(namespace, service.name)
        return service if stored == service.name else msgspec.structs.replace(service, name=stored)

    async def register(self, ctx: Context, req: RegisterRequest) -> Empty:
        """Add or refresh a service's nodes."""
        await self._backend.register(self._inward(self._namespace(ctx), req.service), req.ttl)
        return Empty()

    async def deregister(self, ctx: Context, req: ServiceRequest) -> Empty:
        """Remove a service's nodes."""
        await self._backend.deregister(self._inward(self._namespace(ctx), req.service))
        return Empty()

    @public
    async def get_service(self, ctx: Context, req: GetServiceRequest) -> ServicesResponse:
        """Every live version of one service."""
        namespace = self._namespace(ctx)
        stored = self._stored(namespace, req.name)
        try:
            services = await self._backend.get_service(stored)
        except MicroError as err:
            if stored == req.name:
                raise
            detail = err.detail.replace(repr(stored), repr(req.name))
            raise MicroError(err.id, err.code, detail, err.status) from None
        if namespace is None:
            return ServicesResponse(services)
        return ServicesResponse([msgspec.structs.replace(s, name=req.name) for s in services])

    @public
    async def list_services(self, ctx: Context, req: Empty) -> ServicesResponse:
        """Every live service (with tenancy: the caller's namespace's)."""
        services = await self._backend.list_services()
        namespace = self._namespace(ctx)
        if namespace is None:
            return ServicesResponse(services)
        return ServicesResponse(
            [shown for s in services if (shown := self._shown(namespace, s)) is not None]
        )

    @public
    async def watch(self, ctx: Context, req: WatchRequest) -> AsyncIterator[Event]:
        """Every change from now on (with tenancy: of the caller's namespace's services)."""
        namespace = self._namespace(ctx)
        if namespace is None:
            async for event in self._backend.watch(req.service):
                yield event
            return
        service = None if req.service is None else self._stored(namespace, req.service)
        async for event in self._backend.watch(service):
            shown = self._shown(namespace, event.service)
            if shown is not None:
                yield Event(event.type, shown)
