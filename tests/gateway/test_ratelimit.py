"""Rate limits: token buckets per client IP and per account, 429 with Retry-After and a JSON
error, a fake clock instead of waiting, bounded memory, X-Forwarded-For trusted on request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from micro import Context, Service, public
from micro.gateway import Gateway
from micro.gateway.ratelimit import Buckets, retry_after
from micro.server import MicroServer
from micro.testing import start_server


class Clock:
    """A clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Req(msgspec.Struct):
    name: str = ""


def echo() -> Service:
    svc = Service("echo")

    @svc.handler
    class Echo:
        @public
        async def call(self, ctx: Context, req: Req) -> Req:
            return req

    return svc


# -- the buckets alone -------------------------------------------------------------------------


def test_a_bucket_grants_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = Buckets(2, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token back in half a second
    assert buckets.take("b") == 0.0  # keys are apart
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100  # refills to the burst, no more
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 7.9)] == [1, 1, 2, 8]


def test_a_zero_rate_disables_the_limit() -> None:
    buckets = Buckets(0, 0)
    assert not buckets.enabled
    assert all(buckets.take("a") == 0.0 for _ in range(1000))
    assert len(buckets) == 0
    with pytest.raises(ValueError):
        Buckets(1, 0)


def test_memory_stays_bounded() -> None:
    clock = Clock()
    buckets = Buckets(1, 5, clock=clock, max_keys=100)
    for i in range(1000):  # many busy keys: the least recently used go past max_keys
        buckets.take(f"ip{i}")
    assert len(buckets) <= 100
    clock.now += 60  # all idle now: full buckets are dropped as new keys come
    buckets.take("new")
    assert len(buckets) == 1


# -- at the gateway ----------------------------------------------------------------------------


async def post(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data="{}", headers=headers or {}) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    server = await start_server(tmp_path / "data")
    svc = echo()
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    try:
        yield server
    finally:
        await svc.stop()
        await server.stop()


async def open_gateway(server: MicroServer, clock: Clock, **options: Any) -> Gateway:
    gateway = Gateway(
        server.client,
        "127.0.0.1:0",
        guard=server.guard,
        exchange=server.auth.exchange,
        clock=clock,
        **options,
    )
    await gateway.start()
    return gateway


async def test_per_ip_limit_answers_429_with_retry_after(server: MicroServer) -> None:
    clock = Clock()
    gateway = await open_gateway(server, clock, rate_per_ip=0.5, burst_per_ip=2)
    url = f"http://{gateway.address}/echo/call"
    try:
        assert [(await post(url))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await post(url)
        assert status == 429
        assert headers["Retry-After"] == "2"  # one token in 2 s at 0.5/s
        assert body["id"] == "gateway" and body["code"] == "too_many_requests"
        assert body["status"] == 429
        # /health is never limited
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{gateway.address}/health") as r:
                assert r.status == 200
        clock.now += 2
        assert (await post(url))[0] == 200
        # X-Forwarded-For is not trusted: a made-up address does not get a fresh bucket
        assert (await post(url, {"X-Forwarded-For": "203.0.113.9"}))[0] == 429
    finally:
        await gateway.stop()


async def test_forwarded_addresses_are_used_when_trusted(server: MicroServer) -> None:
    gateway = await open_gateway(
        server, Clock(), rate_per_ip=1, burst_per_ip=1, trust_forwarded=True
    )
    url = f"http://{gateway.address}/echo/call"
    try:
        # the last hop is the one the trusted proxy appended
        assert (await post(url, {"X-Forwarded-For": "198.51.100.1, 203.0.113.1"}))[0] == 200
        assert (await post(url, {"X-Forwarded-For": "198.51.100.2, 203.0.113.1"}))[0] == 429
        assert (await post(url, {"X-Forwarded-For": "203.0.113.2"}))[0] == 200
    finally:
        await gateway.stop()


async def login(server: MicroServer, id: str) -> str:
    assert server.auth is not None
    await server.auth.create_account(id, secret="correct horse battery", scopes=[])
    tokens = await server.auth.login(id, "correct horse battery")
    return f"Bearer {tokens.access_token}"


async def test_per_account_limit(server: MicroServer) -> None:
    clock = Clock()
    gateway = await open_gateway(
        server, clock, rate_per_ip=0, rate_per_account=1, burst_per_account=2
    )
    url = f"http://{gateway.address}/echo/call"
    alice, bob = await login(server, "alice"), await login(server, "bob")
    try:
        assert [(await post(url, {"Authorization": alice}))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await post(url, {"Authorization": alice})
        assert (status, headers["Retry-After"]) == (429, "1")
        assert "micro/alice" in body["detail"]
        # another account on the same address has its own bucket; anonymous calls have none
        assert (await post(url, {"Authorization": bob}))[0] == 200
        assert [(await post(url))[0] for _ in range(3)] == [200, 200, 200]
        # the cookie counts as the same account
        assert (await post(url, {"Cookie": f"micro-token={alice[7:]}"}))[0] == 429
        clock.now += 1
        assert (await post(url, {"Authorization": alice}))[0] == 200
    finally:
        await gateway.stop()
