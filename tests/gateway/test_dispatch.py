"""The gateway's own dispatch (aiohttp's low-level server, no web.Application): routes added
with Gateway.add_route (exact paths, templates, methods, replacement, fall-through to the RPC
routing), the body limit, Expect: 100-continue, and the per-request layers (CORS, the per-IP
limit, metrics) around added routes; Gateway.on_stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web

from micro.client import Client
from micro.gateway import Gateway, Handler
from micro.registry.memory import MemoryRegistry

APP = "https://app.example"
_BOUND = 10.0  # seconds any single exchange may take


class Seen:
    """What the test handlers were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def handler(self, name: str) -> Handler:
        async def handle(request: web.BaseRequest, params: dict[str, str]) -> web.StreamResponse:
            self.calls.append((name, request.method, params))
            return web.json_response({"handler": name, "params": params})

        return handle


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    client = Client(MemoryRegistry())
    try:
        yield client
    finally:
        await client.close()


async def started(gateway: Gateway) -> str:
    await gateway.start()
    return f"http://{gateway.address}"


async def fetch(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    timeout = aiohttp.ClientTimeout(total=_BOUND)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(method, url, data=data, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def test_exact_routes_by_method_and_the_rest_to_rpc(client: Client) -> None:
    seen = Seen()
    gateway = Gateway(client, "127.0.0.1:0")
    gateway.add_route("GET", "/hello", seen.handler("hello"))
    gateway.add_route("*", "/any", seen.handler("any"))
    base = await started(gateway)
    try:
        status, _, body = await fetch("GET", f"{base}/hello")
        assert status == 200 and msgspec.json.decode(body) == {"handler": "hello", "params": {}}
        status, _, body = await fetch("HEAD", f"{base}/hello")  # GET answers HEAD, no body
        assert (status, body) == (200, b"")
        for method in ("GET", "POST", "DELETE"):
            assert (await fetch(method, f"{base}/any"))[0] == 200
        # another method on an exact path goes on to the RPC routing: no such service here
        status, _, body = await fetch("POST", f"{base}/hello", b"{}")
        assert status >= 400 and "code" in msgspec.json.decode(body)
        assert [(n, m) for n, m, _ in seen.calls] == [
            ("hello", "GET"),
            ("hello", "HEAD"),
            ("any", "GET"),
            ("any", "POST"),
            ("any", "DELETE"),
        ]
        assert (await fetch("GET", f"{base}/health"))[2] == b'{"status":"ok"}'
    finally:
        await gateway.stop()


async def test_templates_match_segments_and_a_tail(client: Client) -> None:
    seen = Seen()
    gateway = Gateway(client, "127.0.0.1:0")
    gateway.add_route("POST", "/t/{a}", seen.handler("post"))
    gateway.add_route("*", "/t/{a}", seen.handler("one"))
    gateway.add_route("*", "/t/{a}/{rest*}", seen.handler("tail"))
    base = await started(gateway)
    try:
        await fetch("POST", f"{base}/t/x")
        await fetch("GET", f"{base}/t/x%20y")
        await fetch("GET", f"{base}/t/x/p/q%2Fr?z=1")
        await fetch("PUT", f"{base}/t/x/")
        assert seen.calls == [
            ("post", "POST", {"a": "x"}),
            ("one", "GET", {"a": "x y"}),
            ("tail", "GET", {"a": "x", "rest": "p/q/r"}),
            ("tail", "PUT", {"a": "x", "rest": ""}),
        ]
        # an empty segment matches no {name}: on to the RPC routing
        status, _, _ = await fetch("GET", f"{base}/t//z")
        assert status >= 400 and len(seen.calls) == 4
    finally:
        await gateway.stop()


async def test_adding_a_route_again_replaces_it(client: Client) -> None:
    seen = Seen()
    gateway = Gateway(client, "127.0.0.1:0")
    gateway.add_route("GET", "/x", seen.handler("old"))
    gateway.add_route("get", "/x", seen.handler("new"))
    gateway.add_route("GET", "/y/{a}", seen.handler("old"))
    gateway.add_route("GET", "/y/{a}", seen.handler("new"))
    base = await started(gateway)
    try:
        await fetch("GET", f"{base}/x")
        await fetch("GET", f"{base}/y/1")
        assert [name for name, _, _ in seen.calls] == ["new", "new"]
    finally:
        await gateway.stop()


@pytest.mark.parametrize("path", ["x", "/{a}/x", "/x/{a", "/x/{a*}/y", "/x/{1a}", "/x/a{b}"])
def test_bad_route_paths_are_refused(path: str) -> None:
    gateway = Gateway(Client(MemoryRegistry()), "127.0.0.1:0")
    with pytest.raises(ValueError):
        gateway.add_route("GET", path, Seen().handler("h"))


async def test_body_limit_on_added_routes_is_413_and_counted(client: Client) -> None:
    async def upload(request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    gateway = Gateway(client, "127.0.0.1:0", max_body=1000)
    gateway.add_route("POST", "/upload", upload)
    base = await started(gateway)
    try:
        status, _, body = await fetch("POST", f"{base}/upload", b"x" * 1000)
        assert (status, msgspec.json.decode(body)) == (200, {"size": 1000})
        assert (await fetch("POST", f"{base}/upload", b"x" * 1001))[0] == 413
        # the RPC route answers its JSON error for the same limit
        status, _, body = await fetch("POST", f"{base}/echo/call", b"x" * 5000)
        assert status == 413 and msgspec.json.decode(body)["code"] == "too_large"
        text = gateway.metrics.render().decode()
        assert 'micro_gateway_requests_total{endpoint="-",service="-",status="413"} 2.0' in text
    finally:
        await gateway.stop()


async def test_expect_100_continue(client: Client) -> None:
    async def upload(request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return web.Response(body=await request.read())

    gateway = Gateway(client, "127.0.0.1:0")
    gateway.add_route("POST", "/upload", upload)
    await gateway.start()
    host, port = gateway.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _BOUND)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
        writer.write(b"hello")
        answer = await asyncio.wait_for(reader.read(), _BOUND)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhello")
    finally:
        writer.close()
        await gateway.stop()


async def test_cors_and_the_ip_limit_wrap_added_routes(client: Client) -> None:
    now = [0.0]
    gateway = Gateway(
        client,
        "127.0.0.1:0",
        cors_origins=[APP],
        rate_per_ip=1,
        burst_per_ip=1,
        clock=lambda: now[0],
    )
    gateway.add_route("GET", "/hello", Seen().handler("hello"))
    base = await started(gateway)
    try:
        status, headers, _ = await fetch("GET", f"{base}/hello", headers={"Origin": APP})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == APP
        status, headers, _ = await fetch("GET", f"{base}/hello", headers={"Origin": APP})
        assert status == 429 and headers["Retry-After"] == "1"
        assert headers["Access-Control-Allow-Origin"] == APP
        assert (await fetch("GET", f"{base}/health"))[0] == 200  # exempt
        now[0] += 1.0
        assert (await fetch("GET", f"{base}/hello"))[0] == 200
    finally:
        await gateway.stop()


async def test_on_stop_callbacks_run_when_the_gateway_stops(client: Client) -> None:
    stopped: list[str] = []

    async def first() -> None:
        stopped.append("first")

    async def second() -> None:
        stopped.append("second")

    gateway = Gateway(client, "127.0.0.1:0")
    gateway.on_stop(first)
    gateway.on_stop(second)
    await gateway.start()
    assert stopped == []
    await gateway.stop()
    assert stopped == ["first", "second"]
