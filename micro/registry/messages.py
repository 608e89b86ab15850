"""Request and response types of the ``registry`` RPC service."""

from __future__ import annotations

import msgspec

from . import ServiceInfo

__all__ = [
    "Empty",
    "GetServiceRequest",
    "RegisterRequest",
    "ServiceRequest",
    "ServicesResponse",
    "WatchRequest",
]


class Empty(msgspec.Struct):
    """No fields."""


class RegisterRequest(msgspec.Struct):
    """Register (or heartbeat) ``service``; nodes expire ``ttl`` seconds later."""

    service: ServiceInfo
    ttl: float | None = None


class ServiceRequest(msgspec.Struct):
    """Names the service version and nodes to remove."""

    service: ServiceInfo


class GetServiceRequest(msgspec.Struct):
    """Look up one service by name."""

    name: str


class ServicesResponse(msgspec.Struct):
    """Service versions with their nodes."""

    services: list[ServiceInfo] = []


class WatchRequest(msgspec.Struct):
    """Watch one service (by name) or, when empty, all of them."""

    service: str | None = None
