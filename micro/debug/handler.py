"""The ``Debug`` handler every service serves under its own name."""

from __future__ import annotations

import re

from ..context import Context
from ..errors import bad_request
from ..service.endpoint import public
from . import StatsSnapshot
from .messages import Empty, HealthResponse, TraceRequest, TraceResponse
from .stats import Stats
from .trace import SpanRecorder

__all__ = ["DebugHandler", "check_trace_id"]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def check_trace_id(trace_id: str, where: str = "Debug.Trace") -> str:
    """``trace_id`` if it is 32 lower-case hex digits (upper case is folded), else a
    ``bad_request`` naming the field."""
    folded = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(folded):
        raise bad_request(where, f"trace_id {trace_id[:64]!r} is not 32 hex digits")
    return folded


class DebugHandler:
    """Serves ``Debug.Stats``, ``Debug.Trace`` and ``Debug.Health`` from one service's
    :class:`~micro.debug.stats.Stats` and :class:`~micro.debug.trace.SpanRecorder`."""

    def __init__(self, stats: Stats, recorder: SpanRecorder) -> None:
        self._stats = stats
        self._recorder = recorder

    async def stats(self, ctx: Context, req: Empty) -> StatsSnapshot:
        """Process figures and per-endpoint counters and latencies."""
        return self._stats.snapshot()

    async def trace(self, ctx: Context, req: TraceRequest) -> TraceResponse:
        """The spans of one trace that this service recorded (an empty list if none)."""
        return TraceResponse(self._recorder.trace(check_trace_id(req.trace_id)))

    @public
    async def health(self, ctx: Context, req: Empty) -> HealthResponse:
        """``ok`` and the uptime in seconds."""
        return HealthResponse("ok", self._stats.uptime)
