"""User-defined checks: every expectation against a real service and a real HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from micro import MicroError
from micro.client import Client
from micro.events.memory import MemoryEvents
from micro.monitor import ALERT_TOPIC, Check, Expect, Target
from micro.monitor.monitor import Monitor
from micro.registry.memory import MemoryRegistry
from micro.service import Service
from micro.store.memory import MemoryStore
from micro.store.sqlite import SqliteStore
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock

from .support import target_service


class Env:
    def __init__(
        self,
        monitor: Monitor,
        clock: FakeClock,
        events: MemoryEvents,
        url: str,
        state: dict[str, bool],
    ) -> None:
        self.monitor, self.clock, self.events, self.url = monitor, clock, events, url
        self.state = state


async def _http_app(state: dict[str, bool]) -> web.Application:
    async def flappy(request: web.Request) -> web.Response:
        return web.json_response({"healthy": state["healthy"]})

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "green", "db": {"ok": True, "lag": 0}})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"status": "red"}, status=503)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.8)
        return web.json_response({})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/text", text)
    app.router.add_get("/flappy", flappy)
    app.router.add_get("/slow", slow)
    return app


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    registry, events, clock = MemoryRegistry(), MemoryEvents(), FakeClock()
    svc: Service = target_service(registry)
    await svc.start()
    state = {"healthy": True}
    runner = web.AppRunner(await _http_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = Client(registry)
    monitor = Monitor(registry, client, events, interval=3600, history=5, clock=clock)
    try:
        yield Env(monitor, clock, events, f"http://127.0.0.1:{port}", state)
    finally:
        await monitor.close()
        await client.close()
        await runner.cleanup()
        await svc.stop(grace=0.5)
        await events.close()


def rpc(name: str, endpoint: str = "Target.Status", request: Any = None, **expect: Any) -> Check:
    return Check(name, "rpc", Target("target", endpoint, request), 1.0, 2.0, Expect(**expect))


def http(name: str, url: str, **expect: Any) -> Check:
    return Check(name, "http", Target(url=url), 1.0, 2.0, Expect(**expect))


async def run_once(env: Env, check: Check) -> tuple[bool, str]:
    await env.monitor.add(check)
    await env.monitor.tick()
    (last,) = env.monitor.history(check.name, 1)
    return last.ok, last.detail


RPC_CASES = [
    (rpc("plain"), True, "status 200"),
    (rpc("status", status=200), True, "status 200"),
    (rpc("status-miss", "Target.Missing", status=200), False, "status 404, expected 200"),
    (rpc("error", "Target.Missing"), False, "not_found: no world"),
    (rpc("want-404", "Target.Missing", status=404), True, "status 404"),
    (rpc("field", field="info.healthy"), True, "status 200"),
    (rpc("field-gone", field="info.nope"), False, "field info.nope missing"),
    (rpc("eq", request={"name": "ann"}, field="greeting", equals="hello ann"), True, "status 200"),
    (rpc("neq", field="greeting", equals="bye"), False, 'is "hello world", expected "bye"'),
    (rpc("index", field="tags.1", equals="b"), True, "status 200"),
    (rpc("bool-not-int", field="info.healthy", equals=1), False, "expected 1"),
    (rpc("int", field="info.count", equals=3), True, "status 200"),
    (rpc("fast", max_latency_ms=5000), True, "status 200"),
    (rpc("slow", request={"delay": 0.05}, max_latency_ms=10), False, "over 10 ms"),
]


@pytest.mark.parametrize(("check", "ok", "detail"), RPC_CASES, ids=[c[0].name for c in RPC_CASES])
async def test_rpc_expectations(env: Env, check: Check, ok: bool, detail: str) -> None:
    got_ok, got_detail = await run_once(env, check)
    assert got_ok is ok
    assert detail in got_detail


HTTP_CASES = [
    ("/ok", {}, True, "status 200"),
    ("/ok", {"status": 200, "field": "db.ok", "equals": True}, True, "status 200"),
    ("/ok", {"field": "db.lag", "equals": None}, False, "is 0, expected null"),
    ("/ok", {"field": "status", "equals": "green", "max_latency_ms": 5000}, True, "status 200"),
    ("/broken", {}, False, "status 503"),
    ("/broken", {"status": 503, "field": "status", "equals": "red"}, True, "status 503"),
    ("/missing", {"status": 200}, False, "status 404, expected 200"),
    ("/text", {"field": "a"}, False, "field a missing"),
]


@pytest.mark.parametrize(("path", "expect", "ok", "detail"), HTTP_CASES)
async def test_http_expectations(
    env: Env, path: str, expect: dict[str, Any], ok: bool, detail: str
) -> None:
    got_ok, got_detail = await run_once(env, http("web", env.url + path, **expect))
    assert got_ok is ok
    assert detail in got_detail


async def test_unreachable_targets_fail_with_a_reason(env: Env) -> None:
    ok, detail = await run_once(env, http("down", "http://127.0.0.1:1/"))
    assert not ok and "Connect" in detail
    ok, detail = await run_once(env, Check("nosvc", "rpc", Target("absent", "X.Y"), 1.0, 1.0))
    assert not ok and "absent" in detail


async def test_a_check_over_its_timeout_fails_within_it(env: Env) -> None:
    slow_http = Check("slow-http", "http", Target(url=env.url + "/slow"), 1.0, 0.2)
    slow_rpc = Check("slow-rpc", "rpc", Target("target", "Target.Status", {"delay": 0.8}), 1.0, 0.2)
    for check, word in [(slow_http, "timed out after 0.2 s"), (slow_rpc, "timeout")]:
        ok, detail = await run_once(env, check)
        assert not ok and word in detail
        assert env.monitor.history(check.name, 1)[0].latency_ms < 700


async def test_checks_run_on_their_own_schedule(env: Env) -> None:
    await env.monitor.add(rpc("every-1s"))
    await env.monitor.add(msgspec.structs.replace(rpc("every-3s"), interval=3.0))
    for _ in range(4):
        await env.monitor.tick()
        env.clock.advance(1.0)
    assert len(env.monitor.history("every-1s", 100)) == 4
    assert len(env.monitor.history("every-3s", 100)) == 2  # at t=0 and t=3


async def test_history_is_bounded_and_newest_first(env: Env) -> None:
    await env.monitor.add(rpc("bounded"))
    times = []
    for _ in range(8):
        times.append(env.clock())
        await env.monitor.tick()
        env.clock.advance(1.0)
    history = env.monitor.history("bounded", 100)
    assert [r.time for r in history] == times[::-1][:5]  # history=5 keeps the newest five
    assert [r.time for r in env.monitor.history("bounded", 2)] == times[::-1][:2]
    (status,) = env.monitor.checks()
    assert status.last is not None and status.last.time == times[-1]


async def test_a_failing_check_alerts_once_and_again_when_it_recovers(env: Env) -> None:
    await env.monitor.add(http("flappy", env.url + "/flappy", field="healthy", equals=True))
    await env.monitor.add(http("steady", env.url + "/ok"))
    outcomes = []
    for healthy in (True, False, False, False, True, True, False):
        env.state["healthy"] = healthy
        await env.monitor.tick()
        outcomes.append(env.monitor.history("flappy", 1)[0].ok)
        env.clock.advance(1.0)
    assert outcomes == [True, False, False, False, True, True, False]
    found = [json.loads(e.body) for e in await env.events.read(ALERT_TOPIC)]
    assert [(a["type"], a["check"]) for a in found] == [
        ("check_failed", "flappy"),  # once per outage, not on every failing run
        ("check_recovered", "flappy"),
        ("check_failed", "flappy"),
    ]
    assert "field healthy is false, expected true" in found[0]["detail"]
    assert found[0]["time"] == env.clock.now - 6.0


async def test_checks_and_history_survive_a_restart_with_a_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.start()
    clock, registry = FakeClock(), MemoryRegistry()
    first = Monitor(registry, store=store, history=3, clock=clock)
    await first.add(http("web", "http://127.0.0.1:1/", status=200))
    for _ in range(5):
        await first.tick()
        clock.advance(10)
    before = first.history("web", 10)
    await first.close()
    await store.close()

    store = SqliteStore(tmp_path / "store.db")
    await store.start()
    try:
        second = Monitor(registry, store=store, history=3, clock=clock)
        await second.load()
        assert [c.check for c in second.checks()] == [c.check for c in first.checks()]
        assert second.history("web", 10) == before and len(before) == 3
        await second.tick()
        assert len(second.history("web", 10)) == 3
        keys = await store.list_keys("micro", "monitor", prefix="history/web/")
        assert len(keys) == 3
        await second.close()
        third = Monitor(registry, store=store, history=2, clock=clock)
        await third.load()
        assert third.history("web", 10) == second.history("web", 10)[:2]
        assert len(await store.list_keys("micro", "monitor", prefix="history/web/")) == 2
        await third.remove("web")
        assert await store.list_keys("micro", "monitor") == []
        await third.close()
    finally:
        await store.close()


BAD = [
    (Check("bad name!", "rpc", Target("s", "A.B")), "name"),
    (Check("k", "grpc", Target("s", "A.B")), "kind must be rpc or http"),
    (Check("k", "rpc", Target("", "A.B")), "target.service"),
    (Check("k", "rpc", Target("s", "NoDot")), "target.endpoint"),
    (Check("k", "rpc", Target("s", "A.B", url="http://x/")), "target.url"),
    (Check("k", "http", Target(url="ftp://x/")), "target.url"),
    (Check("k", "http", Target(url="not a url")), "target.url"),
    (Check("k", "http", Target("s", url="http://x/")), "only for rpc"),
    (Check("k", "rpc", Target("s", "A.B"), interval=-1), "interval"),
    (Check("k", "rpc", Target("s", "A.B"), interval=float("nan")), "interval"),
    (Check("k", "rpc", Target("s", "A.B"), timeout=0), "timeout"),
    (Check("k", "rpc", Target("s", "A.B"), expect=Expect(status=42)), "expect.status"),
    (Check("k", "rpc", Target("s", "A.B"), expect=Expect(field="a..b")), "expect.field"),
    (Check("k", "rpc", Target("s", "A.B"), expect=Expect(equals=1)), "needs expect.field"),
    (Check("k", "rpc", Target("s", "A.B"), expect=Expect(max_latency_ms=-5)), "max_latency"),
    (Check("k", "rpc", Target("s", "A.B", {"x": "y" * 70_000})), "target.request"),
]


@pytest.mark.parametrize(("check", "field"), BAD, ids=[b[1] for b in BAD])
async def test_bad_checks_are_refused_and_change_nothing(check: Check, field: str) -> None:
    store = MemoryStore()
    monitor = Monitor(MemoryRegistry(), store=store)
    with pytest.raises(MicroError) as info:
        await monitor.add(check)
    assert info.value.code == "bad_request" and field in info.value.detail
    assert monitor.checks() == []
    assert await store.list_keys("micro", "monitor") == []


async def test_duplicates_unknown_names_and_bad_limits() -> None:
    monitor = Monitor(MemoryRegistry())
    await monitor.add(Check("one", "http", Target(url="http://127.0.0.1:1/")))
    with pytest.raises(MicroError) as info:
        await monitor.add(Check("one", "http", Target(url="http://127.0.0.1:2/")))
    assert info.value.code == "conflict"
    assert monitor.checks()[0].check.target.url == "http://127.0.0.1:1/"
    for call in (monitor.remove("two"),):
        with pytest.raises(MicroError) as info:
            await call
        assert info.value.code == "not_found"
    with pytest.raises(MicroError) as info:
        monitor.history("two")
    assert info.value.code == "not_found"
    with pytest.raises(MicroError) as info:
        monitor.history("one", 0)
    assert info.value.code == "bad_request" and "limit" in info.value.detail


async def test_a_slow_check_neither_delays_probing_nor_runs_twice_at_once() -> None:
    registry = MemoryRegistry()
    svc = target_service(registry)
    await svc.start()
    probes: list[str] = []

    async def prober(address: str, timeout: float) -> float:
        probes.append(address)
        return 0.001

    client = Client(registry)
    monitor = Monitor(registry, client, interval=0.05, prober=prober)
    await monitor.add(
        Check("slow", "rpc", Target("target", "Target.Status", {"delay": 0.6}), 0.05, 2.0)
    )
    await monitor.start()
    try:
        await asyncio.sleep(0.4)
        assert len(probes) >= 3  # rounds went on while the check was in flight
        assert monitor.history("slow", 10) == []

        async def first_result() -> bool:
            return len(monitor.history("slow", 10)) >= 1

        await eventually(first_result, timeout=5, message="slow check finished")
        first = monitor.history("slow", 10)[-1]
        assert first.ok and first.latency_ms >= 500
    finally:
        await monitor.close()
        await client.close()
        await svc.stop(grace=0.5)
