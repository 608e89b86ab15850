"""Request and response types of the ``monitor`` RPC service."""

from __future__ import annotations

import msgspec

from . import Check, CheckResult, CheckStatus, NodeHealth

__all__ = [
    "AddRequest",
    "ChecksResponse",
    "Empty",
    "HealthResponse",
    "HistoryRequest",
    "HistoryResponse",
    "RemoveRequest",
]


class Empty(msgspec.Struct):
    """No fields."""


class AddRequest(msgspec.Struct):
    """Add a check."""

    check: Check


class RemoveRequest(msgspec.Struct):
    """Remove the check called ``name``."""

    name: str


class HistoryRequest(msgspec.Struct):
    """The newest ``limit`` results of check ``name``."""

    name: str
    limit: int = 20


class ChecksResponse(msgspec.Struct):
    """Every check with its latest result."""

    checks: list[CheckStatus] = []


class HistoryResponse(msgspec.Struct):
    """Results, newest first."""

    results: list[CheckResult] = []


class HealthResponse(msgspec.Struct):
    """Every known node's state."""

    nodes: list[NodeHealth] = []
