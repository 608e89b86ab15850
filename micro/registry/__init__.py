"""Registry: which services exist, their versions, nodes and typed endpoints.

A service registers a :class:`ServiceInfo` with its nodes and every endpoint's request and
response JSON Schema, then re-registers (heartbeats) within the TTL; a node that stops
heartbeating expires. Watchers see every change as an :class:`Event`.

Backends: :mod:`micro.registry.memory` (in-process, injectable clock) and
:mod:`micro.registry.rpc` (the client of the ``registry`` service that ``micro server``
hosts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

__all__ = ["EndpointInfo", "Event", "Node", "Registry", "ServiceInfo", "nodes_of"]


class Node(msgspec.Struct, omit_defaults=True):
    """One running instance of a service."""

    id: str
    address: str
    metadata: dict[str, str] = {}


class EndpointInfo(msgspec.Struct, omit_defaults=True):
    """An endpoint and the JSON Schemas of what it takes and returns."""

    name: str
    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    stream: str = "unary"  # unary | server | client | bidi
    metadata: dict[str, str] = {}


class ServiceInfo(msgspec.Struct, omit_defaults=True):
    """A service at one version, with its endpoints and live nodes."""

    name: str
    version: str = "latest"
    metadata: dict[str, str] = {}
    endpoints: list[EndpointInfo] = []
    nodes: list[Node] = []

    def endpoint(self, name: str) -> EndpointInfo | None:
        """The endpoint called ``name``, if this service has it."""
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        return None


class Event(msgspec.Struct):
    """A change seen by a watcher: ``create`` / ``update`` (``service`` holds the version's
    current nodes) or ``delete`` (the version has no node left)."""

    type: Literal["create", "update", "delete"]
    service: ServiceInfo


@runtime_checkable
class Registry(Protocol):
    """What every registry backend provides."""

    async def register(self, service: ServiceInfo, ttl: float | None = None) -> None:
        """Add or refresh ``service``'s nodes; each expires ``ttl`` seconds later (None: never)."""
        ...

    async def deregister(self, service: ServiceInfo) -> None:
        """Remove ``service``'s nodes (the version goes when its last node does)."""
        ...

    async def get_service(self, name: str) -> list[ServiceInfo]:
        """Every live version of ``name``; raises ``not_found`` when there is none."""
        ...

    async def list_services(self) -> list[ServiceInfo]:
        """Every live service version (endpoints included, nodes included)."""
        ...

    def watch(self, service: str | None = None) -> AsyncIterator[Event]:
        """Changes from now on, for one service or all of them."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...


def nodes_of(services: list[ServiceInfo]) -> list[Node]:
    """All nodes across the versions of a service."""
    return [node for svc in services for node in svc.nodes]
