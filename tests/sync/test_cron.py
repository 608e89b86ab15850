"""Cron runners: each tick fires exactly once across replicas, missed-run policies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from micro import Service
from micro.errors import MicroError
from micro.registry.memory import MemoryRegistry
from micro.sync import Sync
from micro.sync.cron import Cron
from micro.sync.handler import SyncHandler
from micro.sync.memory import MemorySync
from micro.sync.rpc import RpcSync
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock

START = 1_699_999_980.0  # a multiple of 30 and of 60


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 1)


@pytest.fixture(params=["memory", "rpc"])
async def replicas(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[list[Sync]]:
    """Three handles on one backend: the same object, or three RPC clients of one server."""
    backend = MemorySync(clock)
    if request.param == "memory":
        yield [backend, backend, backend]
        return
    svc = Service("sync", registry=MemoryRegistry(), address="127.0.0.1:0")
    svc.handler(SyncHandler(backend), name="Sync")
    await svc.start()
    clients = [RpcSync(svc.address) for _ in range(3)]
    try:
        yield list(clients)
    finally:
        for c in clients:
            await c.close()
        await svc.stop(grace=1.0)


def runners(
    replicas: list[Sync], clock: FakeClock, fired: Counter[float], **options: object
) -> list[Cron]:
    async def job(tick: float) -> None:
        fired[tick] += 1

    return [
        Cron(sync, "report", "@every 30s", job, clock=clock, **options)  # type: ignore[arg-type]
        for sync in replicas
    ]


async def test_each_tick_fires_once_across_replicas(replicas: list[Sync], clock: FakeClock) -> None:
    fired: Counter[float] = Counter()
    crons = runners(replicas, clock, fired)
    for _ in range(20):
        clock.advance(30)
        results = await asyncio.gather(*(c.run_pending() for c in crons))
        assert sum(results) == 1
        await asyncio.gather(*(c.run_pending() for c in crons))  # a second look: nothing new
    assert len(fired) == 20 and set(fired.values()) == {1}
    assert sorted(fired) == [START + 30 * i for i in range(1, 21)]
    assert sum(c.fired for c in crons) == 20


async def test_background_loops_fire_each_tick_once(replicas: list[Sync], clock: FakeClock) -> None:
    fired: Counter[float] = Counter()
    crons = runners(replicas, clock, fired, poll=0.01)
    for c in crons:
        c.start()
    try:
        for i in range(1, 6):
            clock.advance(30)
            await eventually(lambda i=i: len(fired) == i, timeout=5)  # type: ignore[misc]
        await asyncio.sleep(0.1)
    finally:
        for c in crons:
            await c.stop()
    assert len(fired) == 5 and set(fired.values()) == {1}


@pytest.mark.parametrize(("policy", "runs"), [("skip", 0), ("run_once", 1)])
async def test_missed_runs(replicas: list[Sync], clock: FakeClock, policy: str, runs: int) -> None:
    fired: Counter[float] = Counter()
    crons = runners(replicas, clock, fired, policy=policy, grace=5.0)
    clock.advance(30)
    assert await crons[0].run_pending()
    clock.advance(300 + 10)  # ten ticks missed, the last one 10 s ago
    await asyncio.gather(*(c.run_pending() for c in crons))
    assert sum(fired.values()) == 1 + runs
    clock.advance(20)  # the next tick, 1 s after it: on time, runs under either policy
    assert sum(await asyncio.gather(*(c.run_pending() for c in crons))) == 1


async def test_first_tick_before_the_cron_existed_is_not_run(clock: FakeClock) -> None:
    fired: Counter[float] = Counter()
    clock.advance(20)  # 21 s after the last tick
    crons = runners([MemorySync(clock)], clock, fired, policy="run_once", grace=5.0)
    assert not await crons[0].run_pending()
    clock.advance(10)
    assert await crons[0].run_pending() and list(fired) == [START + 30]


async def test_bad_options(clock: FakeClock) -> None:
    async def job(tick: float) -> None:
        raise AssertionError("never runs")

    sync = MemorySync(clock)
    with pytest.raises(MicroError) as err:
        Cron(sync, "r", "@every 30s", job, policy="often")  # type: ignore[arg-type]
    assert err.value.code == "bad_request" and "policy" in err.value.detail
    with pytest.raises(MicroError) as err:
        Cron(sync, "r", "61 * * * *", job)
    assert "minute field" in err.value.detail
