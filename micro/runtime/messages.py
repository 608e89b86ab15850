"""Request and response types of the ``runtime`` RPC service."""

from __future__ import annotations

import msgspec

from . import ServiceSpec, ServiceStatus

__all__ = [
    "CreateRequest",
    "DeleteRequest",
    "Empty",
    "LogLine",
    "LogsRequest",
    "ReadRequest",
    "ReadResponse",
    "UpdateRequest",
]


class Empty(msgspec.Struct):
    """No fields."""


class CreateRequest(msgspec.Struct):
    """Run a new service."""

    service: ServiceSpec


class UpdateRequest(msgspec.Struct):
    """Replace an existing service's processes, one at a time, by ones from a new spec."""

    service: ServiceSpec


class ReadRequest(msgspec.Struct):
    """The status of one service (by name) or, when empty, of all of them."""

    name: str | None = None


class ReadResponse(msgspec.Struct):
    """Statuses of services."""

    services: list[ServiceStatus] = []


class DeleteRequest(msgspec.Struct):
    """Stop and forget a service."""

    name: str


class LogsRequest(msgspec.Struct):
    """The last ``lines`` lines of a service's log, and with ``follow`` every new one."""

    name: str
    lines: int = 100
    follow: bool = False


class LogLine(msgspec.Struct):
    """One line of a service's output."""

    text: str
