"""The HTTP gateway in front of a real service: JSON in and out, errors as HTTP statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from micro import Context, Service, conflict
from micro.registry import Node, ServiceInfo
from micro.server import MicroServer
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class Req(msgspec.Struct):
    name: str
    age: int = 0


class Resp(msgspec.Struct):
    message: str


class Sleep(msgspec.Struct):
    seconds: float


def greeter() -> Service:
    svc = Service("greeter")

    @svc.handler
    class Greeter:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(f"Hello {req.name} ({req.age})")

        async def say_hello(self, ctx: Context, req: Req) -> Resp:
            return Resp(f"Hi {req.name} via {ctx.metadata.get('micro-trace', '-')}")

        async def clash(self, ctx: Context, req: Req) -> Resp:
            raise conflict("greeter", f"{req.name} exists")

        async def crash(self, ctx: Context, req: Req) -> Resp:
            raise RuntimeError("boom")

        async def sleep(self, ctx: Context, req: Sleep) -> Resp:
            await asyncio.sleep(req.seconds)
            return Resp("slept")

        async def feed(self, ctx: Context, req: Req) -> AsyncIterator[Resp]:
            yield Resp(req.name)

    return svc


@pytest.fixture
async def gateway(micro_server: MicroServer) -> AsyncIterator[str]:
    svc = greeter()
    svc.use(registry=micro_server.registry)
    await svc.start()
    try:
        assert micro_server.gateway is not None
        yield f"http://{micro_server.gateway.address}"
    finally:
        await svc.stop()


async def post(
    url: str, data: bytes | str, headers: dict[str, str] | None = None
) -> tuple[int, object]:
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_json_in_json_out(gateway: str) -> None:
    assert await post(f"{gateway}/greeter/call", '{"name": "Alice", "age": 3}') == (
        200,
        {"message": "Hello Alice (3)"},
    )
    assert await post(f"{gateway}/greeter", '{"name": "Bob"}') == (
        200,
        {"message": "Hello Bob (0)"},
    )
    status, body = await post(
        f"{gateway}/greeter/say-hello", '{"name": "C"}', {"Micro-Trace": "t-1"}
    )
    assert (status, body) == (200, {"message": "Hi C via t-1"})


async def test_query_string_and_form_bodies(gateway: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway}/greeter/call?name=Q") as r:
            assert (r.status, await r.json()) == (200, {"message": "Hello Q (0)"})
        async with http.post(f"{gateway}/greeter/call", data={"name": "F"}) as r:
            assert (r.status, await r.json()) == (200, {"message": "Hello F (0)"})


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/greeter/call", '{"name": 5}', 400, ["$.name", "str"]),
        ("/greeter/call", '{"age": 1}', 400, ["name"]),
        ("/greeter/call", '{"name": ', 400, ["malformed"]),
        ("/greeter/call", "not json at all", 400, ["JSON"]),
        ("/nobody/call", "{}", 404, ["nobody"]),
        ("/greeter/nothing", "{}", 404, ["Greeter.Nothing"]),
        ("/greeter/clash", '{"name": "x"}', 409, ["x exists"]),
        ("/greeter/crash", '{"name": "x"}', 500, ["boom"]),
        ("/greeter/feed", '{"name": "x"}', 400, ["stream"]),
    ],
)
async def test_errors_map_to_statuses(
    gateway: str, path: str, body: str, status: int, words: list[str]
) -> None:
    got_status, got = await post(gateway + path, body)
    assert got_status == status
    assert isinstance(got, dict) and got["status"] == status
    for word in words:
        assert word in got["detail"]


async def test_deadline_is_504_and_bad_timeout_is_400(gateway: str) -> None:
    status, body = await post(
        f"{gateway}/greeter/sleep", '{"seconds": 5}', {"Micro-Timeout": "0.2"}
    )
    assert status == 504 and isinstance(body, dict) and body["code"] == "timeout"
    status, _ = await post(f"{gateway}/greeter/sleep", '{"seconds": 0}', {"Micro-Timeout": "soon"})
    assert status == 400


async def test_no_live_node_is_503(micro_server: MicroServer) -> None:
    assert micro_server.gateway is not None
    await micro_server.registry.register(
        ServiceInfo("ghost", nodes=[Node("g1", "127.0.0.1:9")]), ttl=60
    )
    status, body = await post(f"http://{micro_server.gateway.address}/ghost/call", "{}")
    assert status == 503 and isinstance(body, dict) and "127.0.0.1:9" in body["detail"]


async def test_oversized_body_is_413_and_the_gateway_keeps_serving(gateway: str) -> None:
    status, _ = await post(f"{gateway}/greeter/call", b'{"name": "' + b"x" * (5 << 20) + b'"}')
    assert status == 413
    assert (await post(f"{gateway}/greeter/call", '{"name": "ok"}'))[0] == 200


async def test_health(gateway: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway}/health") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
