"""Wire types of the ``Debug`` handler."""

from __future__ import annotations

import msgspec

from . import Span

__all__ = ["Empty", "HealthResponse", "TraceRequest", "TraceResponse"]


class Empty(msgspec.Struct):
    """No fields."""


class TraceRequest(msgspec.Struct):
    """Which trace: 32 lower-case hex digits."""

    trace_id: str


class TraceResponse(msgspec.Struct):
    """The spans of one trace recorded by the answering service (possibly none)."""

    spans: list[Span] = []


class HealthResponse(msgspec.Struct):
    """``status`` is ``ok`` while the service is serving."""

    status: str
    uptime: float
