"""Per-service statistics: process figures and, per endpoint, counts and latencies."""

from __future__ import annotations

import gc
import resource
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import MicroError
from . import DEBUG_PREFIX, EndpointStats, StatsSnapshot
from ._histogram import Histogram

if TYPE_CHECKING:
    from ..context import Context
    from ..service.endpoint import HandlerFunc, Middleware

__all__ = ["EndpointCounters", "Stats", "outcome_of", "read_rss", "stats_middleware"]

_perf = time.perf_counter


class EndpointCounters:
    """Requests, errors and the latency histogram of one endpoint."""

    __slots__ = ("client_errors", "errors", "latency")

    def __init__(self) -> None:
        self.errors = 0
        self.client_errors = 0
        self.latency = Histogram()

    @property
    def requests(self) -> int:
        """Calls recorded, whatever their outcome."""
        return self.latency.count

    def snapshot(self, name: str) -> EndpointStats:
        """The counters as a wire struct, latencies in milliseconds."""
        h = self.latency
        return EndpointStats(
            name=name,
            requests=h.count,
            errors=self.errors,
            client_errors=self.client_errors,
            p50_ms=h.percentile(50) * 1000,
            p90_ms=h.percentile(90) * 1000,
            p99_ms=h.percentile(99) * 1000,
            mean_ms=h.mean * 1000,
            max_ms=h.max * 1000,
        )


class Stats:
    """The statistics of one service since it was built. ``record`` is cheap enough to run on
    every call (a dict lookup and a histogram bucket increment)."""

    def __init__(
        self,
        service: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._clock = clock
        self._monotonic = monotonic
        self.started = clock()
        self._started_mono = monotonic()
        self.endpoints: dict[str, EndpointCounters] = {}

    def counters(self, endpoint: str) -> EndpointCounters:
        """The counters of ``endpoint``, created on first use."""
        found = self.endpoints.get(endpoint)
        if found is None:
            found = self.endpoints[endpoint] = EndpointCounters()
        return found

    def record(self, endpoint: str, seconds: float, outcome: int = 0) -> None:
        """One call: ``outcome`` 0 = ok, 1 = error (5xx/unexpected), 2 = client error (4xx)."""
        found = self.endpoints.get(endpoint)
        if found is None:
            found = self.endpoints[endpoint] = EndpointCounters()
        found.latency.record(seconds)
        if outcome == 1:
            found.errors += 1
        elif outcome == 2:
            found.client_errors += 1

    @property
    def uptime(self) -> float:
        """Seconds since the stats were built."""
        return self._monotonic() - self._started_mono

    def snapshot(self) -> StatsSnapshot:
        """Process figures now, and every endpoint's counters, sorted by name."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return StatsSnapshot(
            service=self.service,
            started=self.started,
            uptime=self.uptime,
            memory_rss=read_rss(),
            cpu_user=usage.ru_utime,
            cpu_system=usage.ru_stime,
            threads=threading.active_count(),
            gc_counts=list(gc.get_count()),
            gc_collections=[gen["collections"] for gen in gc.get_stats()],
            endpoints=[c.snapshot(name) for name, c in sorted(self.endpoints.items())],
        )


def read_rss(path: str = "/proc/self/status") -> int:
    """Resident set size in bytes from ``VmRSS`` in ``path``; 0 when unavailable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    parts = line.split()
                    scale = 1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1
                    return int(parts[1]) * scale
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def outcome_of(exc: BaseException) -> int:
    """1 (error) for a 5xx MicroError or any other exception, 2 for a 4xx MicroError."""
    if isinstance(exc, MicroError) and exc.status < 500:
        return 2
    return 1


def stats_middleware(stats: Stats) -> Middleware:
    """Middleware recording every call's latency and outcome in ``stats`` (``Debug.*``
    calls excepted). For streaming endpoints it times opening the stream."""
    record = stats.record

    def wrap(call: HandlerFunc) -> HandlerFunc:
        async def recorded(ctx: Context, request: Any) -> Any:
            endpoint = ctx.endpoint
            if endpoint.startswith(DEBUG_PREFIX):
                return await call(ctx, request)
            started = _perf()
            try:
                result = await call(ctx, request)
            except BaseException as exc:
                record(endpoint, _perf() - started, outcome_of(exc))
                raise
            record(endpoint, _perf() - started, 0)
            return result

        return recorded

    return wrap
