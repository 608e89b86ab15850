"""Every error the gateway answers, each with its HTTP status and the JSON error body
{id, code, detail, status}: 400 401 403 404 405 409 413 429 500 503 504."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec

from micro import Context, Service, conflict, public, route
from micro.gateway import Gateway
from micro.registry import EndpointInfo, Node, ServiceInfo
from micro.testing import admin_header, start_server


class Req(msgspec.Struct):
    name: str = ""
    seconds: float = 0.0


class Thing(msgspec.Struct):
    id: int


def things() -> Service:
    svc = Service("things")

    @svc.handler
    class Things:
        @route("GET", "/things/{id}")
        async def get(self, ctx: Context, req: Thing) -> Thing:
            return req

        async def clash(self, ctx: Context, req: Req) -> Req:
            raise conflict("things", f"{req.name} exists")

        async def crash(self, ctx: Context, req: Req) -> Req:
            raise RuntimeError("boom")

        async def sleep(self, ctx: Context, req: Req) -> Req:
            await asyncio.sleep(req.seconds)
            return req

        @public
        async def open(self, ctx: Context, req: Req) -> Req:
            return req

    return svc


async def test_each_error_maps_to_its_status(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "data")
    assert server.auth is not None
    svc = things()
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    await server.registry.register(
        ServiceInfo(
            "ghost",
            endpoints=[EndpointInfo("Ghost.Call", metadata={"public": "true"})],
            nodes=[Node("g1", "127.0.0.1:9")],
        ),
        ttl=60,
    )
    now = [0.0]
    gateway = Gateway(
        server.client,
        "127.0.0.1:0",
        guard=server.guard,
        exchange=server.auth.exchange,
        max_body=1024,
        rate_per_ip=1,
        burst_per_ip=1000,
        clock=lambda: now[0],
    )
    await gateway.start()
    admin = await admin_header(server)
    await server.auth.create_account("alice", secret="correct horse battery", scopes=[])
    alice = f"Bearer {(await server.auth.login('alice', 'correct horse battery')).access_token}"
    base = f"http://{gateway.address}"
    cases: list[tuple[int, str, str, str, dict[str, str], str]] = [
        (400, "POST", "/things/open", '{"name": 5}', {}, "bad_request"),
        (400, "POST", "/things/open", "{}", {"Micro-Timeout": "soon"}, "bad_request"),
        (401, "POST", "/things/clash", "{}", {}, "unauthorized"),
        (401, "POST", "/things/open", "{}", {"Authorization": "Bearer forged"}, "unauthorized"),
        (403, "POST", "/things/clash", "{}", {"Authorization": alice}, "forbidden"),
        (404, "POST", "/nobody/call", "{}", {"Authorization": admin}, "not_found"),
        (404, "POST", "/things/no/thing", "{}", {"Authorization": admin}, "not_found"),
        (405, "DELETE", "/things/1", "", {"Authorization": admin}, "method_not_allowed"),
        (409, "POST", "/things/clash", '{"name": "x"}', {"Authorization": admin}, "conflict"),
        (413, "POST", "/things/open", '{"name": "' + "x" * 2000 + '"}', {}, "too_large"),
        (500, "POST", "/things/crash", "{}", {"Authorization": admin}, "internal"),
        (503, "POST", "/ghost/call", "{}", {}, "unavailable"),
        (
            504,
            "POST",
            "/things/sleep",
            '{"seconds": 5}',
            {"Authorization": admin, "Micro-Timeout": "0.2"},
            "timeout",
        ),
        (200, "GET", "/things/7", "", {"Authorization": admin}, ""),
    ]
    try:
        async with aiohttp.ClientSession() as http:
            for status, method, path, body, headers, code in cases:
                async with http.request(method, base + path, data=body, headers=headers) as r:
                    got = await r.json(content_type=None)
                    where = f"{method} {path} {headers}"
                    assert r.status == status, (where, got)
                    assert r.content_type == "application/json", where
                    if status == 200:
                        assert got == {"id": 7}
                        continue
                    assert set(got) == {"id", "code", "detail", "status"}, where
                    assert (got["code"], got["status"]) == (code, status), (where, got)
                    if status == 405:
                        assert r.headers["Allow"] == "GET"
            # 429: the burst spent, the clock standing still
            gateway.ip_limit.burst = 1
            gateway.ip_limit.take("127.0.0.1")
            async with http.post(f"{base}/things/open", data="{}") as r:
                got = await r.json()
                assert r.status == 429 and r.headers["Retry-After"] == "1"
                assert (got["id"], got["code"], got["status"]) == (
                    "gateway",
                    "too_many_requests",
                    429,
                )
    finally:
        await gateway.stop()
        await svc.stop()
        await server.stop()
