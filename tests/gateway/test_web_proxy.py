"""The web proxy: ``/web/{service}/...`` to an ASGI app served by :func:`serve_asgi`, HTTP and
WebSocket, bodies streamed both ways; 404 without a web node, 502 when the app is down,
auth with ``Web.{METHOD}`` rules."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import RedirectResponse, StreamingResponse
from multidict import CIMultiDict

from micro.auth import PUBLIC, Resource, Rule
from micro.gateway import Gateway
from micro.gateway.webproxy import install
from micro.registry import Node, Registry, ServiceInfo
from micro.server import MicroServer
from micro.service.web import serve_asgi
from micro.testing import admin_header, start_server
from tests.noauth import micro_server  # noqa: F401 (auth off: not what most of these test)


class Probe:
    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.got_chunk = asyncio.Event()
        self.release = asyncio.Event()


def site(probe: Probe) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        probe.started = True
        yield
        probe.stopped = True

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello(request: Request, name: str = "world") -> dict[str, object]:
        h = request.headers
        return {
            "hello": name,
            "path": request.url.path,
            "query": request.url.query,
            "prefix": h.get("x-forwarded-prefix"),
            "for": h.get("x-forwarded-for"),
            "proto": h.get("x-forwarded-proto"),
            "host": h.get("x-forwarded-host"),
            "authorization": h.get("authorization"),
            "secret": h.get("x-secret"),
            "custom": h.get("x-custom"),
        }

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(
            body,
            media_type=request.headers.get("content-type"),
            headers={"x-length": str(len(body)), "x-method": request.method},
        )

    @app.put("/upload")
    async def upload(request: Request) -> dict[str, int]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if chunk:
                probe.got_chunk.set()
        return {"total": total}

    @app.get("/download")
    async def download() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await probe.release.wait()
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/moved")
    async def moved(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.base_url}hello?name=moved", status_code=302)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="chat" if "chat" in offered else None)
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text, data = msg.get("text"), msg.get("bytes")
            if text == "bye":
                await websocket.close(code=4001, reason="see you")
                return
            if text is not None:
                await websocket.send_text(f"echo {text}")
            elif data is not None:
                await websocket.send_bytes(data[::-1])

    return app


@pytest.fixture
async def probe() -> Probe:
    return Probe()


@pytest.fixture
async def app_url(probe: Probe) -> AsyncIterator[str]:
    url, stop = await serve_asgi(site(probe))
    assert probe.started
    try:
        yield url
    finally:
        await stop()
        assert probe.stopped


async def register(registry: Registry, name: str, web: str | None) -> None:
    metadata = {"web": web} if web is not None else {}
    node = Node(f"{name}-1", "127.0.0.1:9", metadata)
    await registry.register(ServiceInfo(name, nodes=[node]), ttl=60)


async def proxy_for(server: MicroServer) -> Gateway:
    gateway = Gateway(server.client, "127.0.0.1:0", guard=server.guard)
    install(gateway)
    await gateway.start()
    return gateway


@pytest.fixture
async def url(micro_server: MicroServer, app_url: str) -> AsyncIterator[str]:
    await register(micro_server.registry, "site", app_url)
    gateway = await proxy_for(micro_server)
    try:
        yield f"http://{gateway.address}"
    finally:
        await gateway.stop()


async def test_get_with_query_and_forwarded_headers(url: str) -> None:
    headers = CIMultiDict(
        {
            "X-Custom": "kept",
            "X-Secret": "hop",
            "Connection": "keep-alive, X-Secret",
            "X-Forwarded-For": "10.0.0.1",
        }
    )
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/web/site/hello?name=Ann&x=1", headers=headers) as r,
    ):
        assert r.status == 200
        body = await r.json()
    assert body["hello"] == "Ann" and body["path"] == "/hello" and body["query"] == "name=Ann&x=1"
    assert body["prefix"] == "/web/site" and body["proto"] == "http"
    assert body["host"] == url.removeprefix("http://")
    assert body["for"] == "10.0.0.1, 127.0.0.1"
    assert body["custom"] == "kept"
    assert body["secret"] is None  # named by Connection: hop-by-hop, dropped


async def test_post_body_and_response_headers(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/web/site/echo", data=b"\x00binary\xff", headers={"Content-Type": "x/y"}
        ) as r,
    ):
        assert r.status == 200
        assert await r.read() == b"\x00binary\xff"
        assert r.headers["Content-Type"] == "x/y"
        assert r.headers["x-length"] == "8" and r.headers["x-method"] == "POST"


async def test_request_body_is_streamed_to_the_app(url: str, probe: Probe) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        # the app has the first chunk before the second is even sent: nothing buffers it
        await asyncio.wait_for(probe.got_chunk.wait(), 10)
        yield b"b" * 2000

    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{url}/web/site/upload", data=body()) as r,
    ):
        assert (r.status, await r.json()) == (200, {"total": 3000})


async def test_response_body_is_streamed_to_the_client(url: str, probe: Probe) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/web/site/download") as r:
        assert r.status == 200
        # the first chunk arrives while the app still holds the second
        assert await asyncio.wait_for(r.content.readline(), 10) == b"first\n"
        probe.release.set()
        assert await r.content.read() == b"second\n"


async def test_redirects_pass_through_rewritten_to_the_prefix(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/web/site/moved", allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "/web/site/hello?name=moved"
        async with http.get(f"{url}/web/site/moved") as r:
            assert (await r.json())["hello"] == "moved"
        async with http.get(f"{url}/web/site?x=1", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["Location"] == "/web/site/?x=1"


async def test_websocket_frames_both_ways(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/web/site/ws", protocols=["chat"]) as ws,
    ):
        assert ws.protocol == "chat"
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=10) == "echo hi"
        await ws.send_bytes(b"\x01\x02\x03")
        assert await ws.receive_bytes(timeout=10) == b"\x03\x02\x01"
        await ws.send_str("bye")
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4001
        assert msg.extra == "see you"


async def test_websocket_client_closing_reaches_the_app(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/web/site/ws")
        await ws.send_str("one")
        assert await ws.receive_str(timeout=10) == "echo one"
        await ws.close()
        assert ws.close_code == 1000
        # the proxy is still fine for the next one
        async with http.ws_connect(f"{url}/web/site/ws") as again:
            await again.send_str("two")
            assert await again.receive_str(timeout=10) == "echo two"


async def test_websocket_the_app_refuses_is_502(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/web/site/no-such-socket",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as r,
    ):
        assert r.status == 502
        assert (await r.json())["code"] == "bad_gateway"


async def test_missing_web_node_or_service_is_404(micro_server: MicroServer, url: str) -> None:
    await register(micro_server.registry, "plain", None)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/web/plain/") as r:
            assert r.status == 404 and "serves HTTP" in (await r.json())["detail"]
        async with http.get(f"{url}/web/nobody/x") as r:
            assert r.status == 404 and "nobody" in (await r.json())["detail"]


async def test_app_down_is_502(micro_server: MicroServer, url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await register(micro_server.registry, "down", f"http://127.0.0.1:{port}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/web/down/anything") as r:
            assert r.status == 502
            body = await r.json()
            assert body["code"] == "bad_gateway" and str(port) in body["detail"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/web/down/ws")
        assert refused.value.status == 502


async def test_serve_asgi_reports_a_failing_startup() -> None:
    async def broken(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("no lifespan here")

    with pytest.raises(RuntimeError, match="did not start"):
        await serve_asgi(broken)


@pytest.fixture
async def secure(tmp_path: Path, app_url: str) -> AsyncIterator[tuple[MicroServer, str]]:
    server = await start_server(tmp_path / "secure", auth=True)
    await register(server.registry, "site", app_url)
    gateway = await proxy_for(server)
    try:
        yield server, f"http://{gateway.address}"
    finally:
        await gateway.stop()
        await server.stop()


async def test_auth_needs_an_account_unless_a_rule_opens_the_site(
    secure: tuple[MicroServer, str],
) -> None:
    server, url = secure
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/web/site/hello") as r:
            assert r.status == 401
        admin = await admin_header(server)
        async with http.get(f"{url}/web/site/hello", headers={"Authorization": admin}) as r:
            assert r.status == 200
            assert (await r.json())["authorization"] == admin  # the app may verify it too
        await server.auth.create_rule(Rule("site-get", PUBLIC, Resource("site", "Web.GET")))
        await server.guard.reload()
        async with http.get(f"{url}/web/site/hello") as r:
            assert r.status == 200 and (await r.json())["authorization"] is None
        async with http.post(f"{url}/web/site/echo", data=b"x") as r:
            assert r.status == 401  # the rule opens GET only
