"""CORS at the gateway: preflights answered for allowed origins only, CORS headers on answers
to allowed origins (credentials for listed origins, not for "*")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import aiohttp
import msgspec
import pytest

from micro import Context, Service
from micro.gateway import Gateway
from micro.server import MicroServer
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)

APP = "https://app.example"


class Req(msgspec.Struct):
    name: str = ""


def echo() -> Service:
    svc = Service("echo")

    @svc.handler
    class Echo:
        async def call(self, ctx: Context, req: Req) -> Req:
            return req

    return svc


async def open_gateway(server: MicroServer, origins: Sequence[str], **options: float) -> Gateway:
    gateway = Gateway(server.client, "127.0.0.1:0", cors_origins=origins, **options)  # type: ignore[arg-type]
    await gateway.start()
    return gateway


@pytest.fixture
async def url(micro_server: MicroServer) -> AsyncIterator[str]:
    svc = echo()
    svc.use(registry=micro_server.registry)
    await svc.start()
    gateway = await open_gateway(micro_server, [APP, "http://localhost:3000/"])
    try:
        yield f"http://{gateway.address}"
    finally:
        await gateway.stop()
        await svc.stop()


async def preflight(url: str, origin: str, headers: str = "") -> aiohttp.ClientResponse:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    async with aiohttp.ClientSession() as http:
        async with http.options(f"{url}/echo/call", headers=request_headers) as resp:
            await resp.read()
            return resp


async def test_preflight_from_an_allowed_origin(url: str) -> None:
    resp = await preflight(url, APP, "authorization, content-type, micro-trace, x-evil")
    assert resp.status == 204
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == APP
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in h["Access-Control-Allow-Methods"]
    allowed = [a.strip().lower() for a in h["Access-Control-Allow-Headers"].split(",")]
    for name in ("authorization", "content-type", "micro-timeout", "traceparent", "micro-trace"):
        assert name in allowed
    assert "x-evil" not in allowed
    assert int(h["Access-Control-Max-Age"]) > 0
    assert "Origin" in h["Vary"]
    # origins compare without case or a trailing slash
    assert (await preflight(url, "HTTP://LOCALHOST:3000")).status == 204


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.evil", "null"])
async def test_preflight_from_another_origin_is_refused_without_cors_headers(
    url: str, origin: str
) -> None:
    resp = await preflight(url, origin)
    assert resp.status == 403
    assert not [k for k in resp.headers if k.lower().startswith("access-control-")]


async def test_answers_carry_cors_headers_for_allowed_origins_only(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/echo/call", data='{"name": "a"}', headers={"Origin": APP}
        ) as r:
            assert (r.status, await r.json()) == (200, {"name": "a"})
            assert r.headers["Access-Control-Allow-Origin"] == APP
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
            assert "Origin" in r.headers["Vary"]
        # errors too, so the page can read them
        async with http.post(f"{url}/nobody/call", data="{}", headers={"Origin": APP}) as r:
            assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == APP
        for headers in ({"Origin": "https://evil.example"}, {}):
            async with http.post(f"{url}/echo/call", data="{}", headers=headers) as r:
                assert r.status == 200
                assert "Access-Control-Allow-Origin" not in r.headers


async def test_no_origins_configured_means_no_cors(micro_server: MicroServer) -> None:
    gateway = await open_gateway(micro_server, [])
    try:
        resp = await preflight(f"http://{gateway.address}", APP)
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await gateway.stop()


async def test_any_origin_is_allowed_without_credentials(micro_server: MicroServer) -> None:
    gateway = await open_gateway(micro_server, ["*"])
    try:
        resp = await preflight(f"http://{gateway.address}", "https://anyone.example")
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers
    finally:
        await gateway.stop()


async def test_rate_limited_answers_keep_cors_headers(micro_server: MicroServer) -> None:
    now = [0.0]
    gateway = Gateway(
        micro_server.client,
        "127.0.0.1:0",
        cors_origins=[APP],
        rate_per_ip=1,
        burst_per_ip=1,
        clock=lambda: now[0],
    )
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            for expected in (404, 429):
                url = f"http://{gateway.address}/nobody/call"
                async with http.post(url, data="{}", headers={"Origin": APP}) as r:
                    assert r.status == expected
                    assert r.headers["Access-Control-Allow-Origin"] == APP
            assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]
    finally:
        await gateway.stop()
