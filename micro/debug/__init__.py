"""Debug: per-service stats, distributed traces and structured logs.

Every service records, for each call it handles, a latency sample and an outcome
(:mod:`micro.debug.stats`) and a span (:mod:`micro.debug.trace`). Both live in memory,
bounded, in the service's own process, and are read over RPC through the ``Debug`` handler
that each service serves under its own name (``Debug.Stats``, ``Debug.Trace``,
``Debug.Health``). :mod:`micro.debug.collect` asks every node for the spans of one trace and
assembles the tree. :mod:`micro.debug.logs` formats log records as JSON lines carrying the
trace id of the call being handled.

Trace context travels in call metadata under ``traceparent`` in the W3C format
``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``; handlers' outgoing calls inherit
it, so a chain of calls forms one trace. A malformed ``traceparent`` starts a new trace; it
is never an error. Calls to ``Debug.*`` themselves are neither counted nor traced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..service.endpoint import Middleware

__all__ = [
    "DEBUG_PREFIX",
    "MAX_SPANS",
    "EndpointStats",
    "Instrumentation",
    "Span",
    "StatsSnapshot",
    "instrument",
]

DEBUG_PREFIX = "Debug."  # endpoints of the debug handler: not counted, not traced
MAX_SPANS = 4096  # spans a service keeps (oldest dropped first)


class Span(msgspec.Struct, omit_defaults=True):
    """One call handled by one service: a node of a trace tree."""

    trace_id: str
    span_id: str
    service: str
    endpoint: str
    start: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    parent_id: str = ""  # "" for the root of a trace
    status: str = "ok"  # ok | error (5xx or unexpected) | client_error (4xx)
    error: str = ""


class EndpointStats(msgspec.Struct):
    """Counters and latency percentiles (milliseconds) of one endpoint since start."""

    name: str
    requests: int
    errors: int  # 5xx MicroError or any other exception
    client_errors: int  # 4xx MicroError
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


class StatsSnapshot(msgspec.Struct):
    """A service process at one instant, and its endpoints."""

    service: str
    started: float  # wall clock
    uptime: float  # seconds
    memory_rss: int  # bytes; 0 where /proc is not available
    cpu_user: float  # seconds
    cpu_system: float  # seconds
    threads: int
    gc_counts: list[int]  # allocations pending per generation (gc.get_count)
    gc_collections: list[int]  # collections run per generation
    endpoints: list[EndpointStats]


class Instrumentation:
    """What one service needs to be observable: its stats, its spans, the middleware that
    fills them and the ``Debug`` handler that serves them. Build it with :func:`instrument`."""

    def __init__(self, service: str, max_spans: int = MAX_SPANS) -> None:
        from .handler import DebugHandler
        from .otel import exporter_from_env
        from .stats import Stats, stats_middleware
        from .trace import SpanRecorder, tracing_middleware

        self.stats = Stats(service)
        self.recorder = SpanRecorder(max_spans, exporter=exporter_from_env(service))
        self.middleware: list[Middleware] = [
            tracing_middleware(self.recorder),
            stats_middleware(self.stats),
        ]
        self.handler = DebugHandler(self.stats, self.recorder)


def instrument(service: str, max_spans: int = MAX_SPANS) -> Instrumentation:
    """Stats, span recorder, middleware (tracing outermost) and ``Debug`` handler for
    ``service``."""
    return Instrumentation(service, max_spans)
