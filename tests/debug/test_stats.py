"""Stats: histogram percentiles on known inputs, counters, process figures, overhead."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from micro import Context
from micro.debug._histogram import Histogram
from micro.debug.stats import Stats, read_rss, stats_middleware
from micro.errors import bad_request, internal, not_found


def close(got: float, want: float, rel: float = 0.03) -> bool:
    return abs(got - want) <= rel * want


def test_percentiles_of_a_uniform_range() -> None:
    h = Histogram()
    for ms in range(1, 1001):  # 1 ms .. 1000 ms
        h.record(ms / 1000)
    assert h.count == 1000
    assert close(h.percentile(50), 0.500)
    assert close(h.percentile(90), 0.900)
    assert close(h.percentile(99), 0.990)
    assert h.percentile(100) == pytest.approx(1.0)
    assert h.percentile(0) == pytest.approx(0.001)  # clamped to the exact minimum
    assert h.mean == pytest.approx(0.5005)
    assert h.max == 1.0


def test_percentiles_of_a_skewed_distribution() -> None:
    h = Histogram()
    for _ in range(95):
        h.record(0.002)
    for _ in range(5):
        h.record(0.250)
    assert close(h.percentile(50), 0.002)
    assert close(h.percentile(95), 0.002)
    assert close(h.percentile(96), 0.250)
    assert close(h.percentile(99), 0.250)


def test_extremes_and_empty() -> None:
    h = Histogram()
    assert h.percentile(50) == 0.0 and h.mean == 0.0
    h.record(0.0)
    h.record(5000.0)  # beyond the last bucket: kept, clamped to the exact maximum
    assert h.percentile(0) == 0.0
    assert h.percentile(100) == 5000.0
    with pytest.raises(ValueError, match="between 0 and 100"):
        h.percentile(101)


def test_stats_snapshot_counts_and_process_figures() -> None:
    now = [100.0]
    stats = Stats("svc", clock=lambda: 1.5e9, monotonic=lambda: now[0])
    stats.record("A.B", 0.010)
    stats.record("A.B", 0.020, 1)
    stats.record("A.B", 0.030, 2)
    stats.record("A.C", 0.001)
    now[0] = 142.0
    snap = stats.snapshot()
    assert snap.service == "svc" and snap.started == 1.5e9 and snap.uptime == 42.0
    assert [e.name for e in snap.endpoints] == ["A.B", "A.C"]
    ab = snap.endpoints[0]
    assert (ab.requests, ab.errors, ab.client_errors) == (3, 1, 1)
    assert close(ab.p50_ms, 20.0) and close(ab.max_ms, 30.0) and close(ab.mean_ms, 20.0)
    assert snap.memory_rss > 1024 * 1024  # this test process uses more than a MiB
    assert snap.cpu_user > 0 and snap.threads >= 1
    assert len(snap.gc_counts) == 3 and len(snap.gc_collections) == 3


def test_read_rss_parses_kb_and_tolerates_missing_files(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  2048 kB\nThreads:\t1\n")
    assert read_rss(str(status)) == 2048 * 1024
    status.write_text("Name:\tpython\n")
    assert read_rss(str(status)) == 0
    assert read_rss(str(tmp_path / "absent")) == 0


async def test_middleware_counts_ok_errors_and_client_errors() -> None:
    stats = Stats("svc")

    async def handler(ctx: Context, req: Any) -> Any:
        if req == "4xx":
            raise bad_request("svc", "no")
        if req == "404":
            raise not_found("svc", "none")
        if req == "5xx":
            raise internal("svc", "broken")
        if req == "boom":
            raise RuntimeError("boom")
        return req

    call = stats_middleware(stats)(handler)
    ctx = Context(service="svc", endpoint="H.Do")
    assert await call(ctx, "ok") == "ok"
    for req in ("4xx", "404", "5xx", "boom"):
        with pytest.raises(Exception):  # noqa: B017 - each kind is re-raised unchanged
            await call(ctx, req)
    counters = stats.endpoints["H.Do"]
    assert (counters.requests, counters.errors, counters.client_errors) == (5, 2, 2)
    await call(Context(service="svc", endpoint="Debug.Stats"), "ok")
    assert "Debug.Stats" not in stats.endpoints  # debug calls are not counted


async def test_middleware_times_the_call() -> None:
    stats = Stats("svc")

    async def slow(ctx: Context, req: Any) -> Any:
        await asyncio.sleep(0.05)
        return None

    await stats_middleware(stats)(slow)(Context(endpoint="H.Slow"), None)
    p50 = stats.snapshot().endpoints[0].p50_ms
    assert 45 <= p50 < 1000


def test_record_overhead_is_small() -> None:
    """The per-call cost of ``Stats.record`` (printed; bounded loosely against CI noise)."""
    stats = Stats("svc")
    n = 200_000
    started = time.perf_counter()
    for i in range(n):
        stats.record("H.Do", 0.000_1 * (i % 50 + 1))
    per_call = (time.perf_counter() - started) / n
    print(f"Stats.record: {per_call * 1e9:.0f} ns per call")
    assert stats.endpoints["H.Do"].requests == n
    assert per_call < 20e-6
