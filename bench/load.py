"""The load generator: N workers each looping call-await, timed per call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

__all__ = ["Row", "measure", "percentile"]


class Row(msgspec.Struct):
    """One measured case; the field names are the keys of ``--json`` rows."""

    transport: str
    inflight: int
    calls_per_s: float
    p50_ms: float
    p99_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


class _State:
    __slots__ = ("recording", "running")

    def __init__(self) -> None:
        self.running = True
        self.recording = False


async def _worker(call: Callable[[], Awaitable[Any]], state: _State, out: list[float]) -> None:
    clock = time.perf_counter
    while state.running:
        start = clock()
        await call()
        elapsed = clock() - start
        if state.recording:
            out.append(elapsed)


async def measure(
    transport: str,
    call: Callable[[], Awaitable[Any]],
    inflight: int,
    duration: float,
    warmup: float,
    stop_timeout: float = 10.0,
) -> Row:
    """Run ``inflight`` workers for ``warmup`` seconds unrecorded, then ``duration`` seconds
    recorded; every call's latency is taken with :func:`time.perf_counter`. Raises if a worker
    fails or the calls in flight do not finish within ``stop_timeout`` seconds of the end."""
    state = _State()
    latencies: list[float] = []
    workers = [asyncio.ensure_future(_worker(call, state, latencies)) for _ in range(inflight)]
    watch = asyncio.gather(*workers)
    try:
        await _sleep_unless_failed(watch, warmup)
        state.recording = True
        started = time.perf_counter()
        await _sleep_unless_failed(watch, duration)
        state.recording = False
        elapsed = time.perf_counter() - started
        state.running = False
        await asyncio.wait_for(asyncio.shield(watch), stop_timeout)
    finally:
        state.running = False
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if not watch.done():
            watch.cancel()
        elif not watch.cancelled():
            watch.exception()  # retrieved: it was raised above or is a cancellation
    latencies.sort()
    return Row(
        transport=transport,
        inflight=inflight,
        calls_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
    )


async def _sleep_unless_failed(watch: asyncio.Future[Any], seconds: float) -> None:
    """Sleep ``seconds``, but raise at once if a worker fails (or all of them ended)."""
    done, _ = await asyncio.wait([watch], timeout=seconds)
    if done:
        watch.result()
        raise RuntimeError("the workers stopped before the end of the run")
