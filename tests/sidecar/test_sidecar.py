"""The HTTP sidecar: plain HTTP applications (with and without an OpenAPI document) served
as micro services, called over RPC and through the gateway, on a real server with auth on."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from micro.client import Client
from micro.errors import MicroError
from micro.server import MicroServer
from micro.sidecar import Sidecar, handler_name, routes_of
from micro.testing import admin_client, admin_header, start_server

pytestmark = pytest.mark.timeout(60)


class User(BaseModel):
    id: int
    name: str


class NewUser(BaseModel):
    name: str


def fastapi_app() -> FastAPI:
    app = FastAPI()
    users: dict[int, User] = {1: User(id=1, name="ada")}

    @app.get("/users/{user_id}", operation_id="get_user")
    async def get_user(user_id: int, verbose: bool = False) -> User:
        if user_id not in users:
            raise HTTPException(404, f"no user {user_id}")
        return users[user_id]

    @app.post("/users", operation_id="create_user", status_code=201)
    async def create_user(user: NewUser) -> User:
        if any(u.name == user.name for u in users.values()):
            raise HTTPException(409, f"{user.name} exists")
        made = User(id=max(users) + 1, name=user.name)
        users[made.id] = made
        return made

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise HTTPException(500, "exploded")

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def fastapi_url() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        fastapi_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def plain_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "token": request.headers.get("X-Token", ""),
                "body": json.loads(body) if body else None,
            }
        )

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="short and stout")

    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/teapot", teapot)
    return app


@pytest.fixture
async def plain_url() -> AsyncIterator[str]:
    runner = web.AppRunner(await plain_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MicroServer]:
    server = await start_server(tmp_path / "data")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(server: MicroServer) -> AsyncIterator[Client]:
    async with admin_client(server) as c:
        c.timeout = 5.0
        yield c


async def sidecar(server: MicroServer, name: str, url: str, **kw: Any) -> Sidecar:
    svc = Sidecar(name, url, **kw)
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    return svc


async def gateway(
    server: MicroServer, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    assert server.gateway is not None
    url = f"http://{server.gateway.address}{path}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=headers or {}) as resp:
            return resp.status, await resp.json(content_type=None)


def test_names() -> None:
    assert handler_name("legacy") == "Legacy"
    assert handler_name("my-app") == "MyApp"
    doc = {
        "paths": {
            "/users/{id}": {"get": {}, "delete": {"operationId": "remove_user"}},
            "/health": {"get": {"operationId": "health"}},
        }
    }
    routes = {r.endpoint: r for r in routes_of(doc, "legacy")}
    assert set(routes) == {"Legacy.GetUsersId", "Legacy.RemoveUser", "Legacy.Health"}
    assert routes["Legacy.GetUsersId"].path_params == ("id",)
    assert routes["Legacy.RemoveUser"].method == "DELETE"


async def test_openapi_routes_become_typed_endpoints(
    server: MicroServer, client: Client, fastapi_url: str
) -> None:
    svc = await sidecar(server, "legacy", fastapi_url)
    try:
        (info,) = await server.registry.get_service("legacy")
        eps = {e.name: e for e in info.endpoints}
        # operationIds given, else FastAPI's generated one (boom_boom_get)
        assert {"Legacy.GetUser", "Legacy.CreateUser", "Legacy.BoomBoomGet"} <= set(eps)
        get = eps["Legacy.GetUser"]
        assert json.loads(get.metadata["http"]) == [["GET", "/users/{user_id}"]]
        assert get.metadata["idempotent"] == "true"
        assert get.request["required"] == ["user_id"]
        assert set(get.request["properties"]) == {"user_id", "verbose"}
        create = eps["Legacy.CreateUser"]
        assert json.loads(create.metadata["http"]) == [["POST", "/users"]]
        assert create.request["properties"]["name"]["type"] == "string"
        assert create.response["$ref"] == "#/$defs/User"
        assert "User" in create.response["$defs"]

        got = await client.call("legacy", "Legacy.GetUser", {"user_id": 1, "verbose": True})
        assert got == {"id": 1, "name": "ada"}
        made = await client.call("legacy", "Legacy.CreateUser", {"name": "grace"})
        assert made == {"id": 2, "name": "grace"}
        assert await client.call("legacy", "Legacy.GetUser", {"user_id": 2}) == made
    finally:
        await svc.stop(grace=1.0)


async def test_http_errors_map_to_micro_errors(
    server: MicroServer, client: Client, fastapi_url: str
) -> None:
    svc = await sidecar(server, "legacy", fastapi_url)
    try:
        with pytest.raises(MicroError) as err:
            await client.call("legacy", "Legacy.GetUser", {"user_id": 99})
        assert (err.value.status, err.value.code, err.value.id) == (404, "not_found", "legacy")
        assert "no user 99" in err.value.detail
        with pytest.raises(MicroError) as err:
            await client.call("legacy", "Legacy.CreateUser", {"name": "ada"})
        assert (err.value.status, err.value.code) == (409, "conflict")
        with pytest.raises(MicroError) as err:  # FastAPI's own validation: 422 passed on
            await client.call("legacy", "Legacy.GetUser", {"user_id": "abc"})
        assert err.value.status == 422
        assert "user_id" in err.value.detail
        with pytest.raises(MicroError) as err:
            await client.call("legacy", "Legacy.GetUser", {})
        assert err.value.status == 400
        assert "user_id" in err.value.detail
        boom = next(n for n in svc.routes if svc.routes[n].path == "/boom")
        with pytest.raises(MicroError) as err:
            await client.call("legacy", boom, {})
        assert (err.value.status, err.value.code) == (500, "internal")
        assert "exploded" in err.value.detail
    finally:
        await svc.stop(grace=1.0)


async def test_through_the_gateway(server: MicroServer, fastapi_url: str) -> None:
    svc = await sidecar(server, "legacy", fastapi_url)
    try:
        auth = {"Authorization": await admin_header(server)}
        assert await gateway(server, "/legacy/get-user", {"user_id": 1}, auth) == (
            200,
            {"id": 1, "name": "ada"},
        )
        status, body = await gateway(server, "/legacy/get-user", {"user_id": 7}, auth)
        assert status == 404
        assert "no user 7" in body["detail"]
        status, body = await gateway(server, "/legacy/get-user", {"user_id": 1})
        assert status == 401  # the sidecar's endpoints are private like any service's
    finally:
        await svc.stop(grace=1.0)


async def test_without_openapi_one_call_endpoint(
    server: MicroServer, client: Client, plain_url: str
) -> None:
    svc = await sidecar(server, "plain-app", plain_url)
    try:
        (info,) = await server.registry.get_service("plain-app")
        assert {e.name for e in info.endpoints if not e.name.startswith("Debug.")} == {
            "PlainApp.Call"
        }
        got = await client.call(
            "plain-app",
            "PlainApp.Call",
            {
                "method": "post",
                "path": "/echo/a/b",
                "query": {"x": "1"},
                "headers": {"X-Token": "t"},
                "body": {"k": [1, 2]},
            },
        )
        assert got["status"] == 200
        assert got["body"] == {
            "method": "POST",
            "path": "/echo/a/b",
            "query": {"x": "1"},
            "token": "t",
            "body": {"k": [1, 2]},
        }
        teapot = await client.call("plain-app", "PlainApp.Call", {"path": "/teapot"})
        assert (teapot["status"], teapot["body"]) == (418, "short and stout")
        status, body = await gateway(
            server,
            "/plain-app/call",
            {"path": "echo/x"},
            {"Authorization": await admin_header(server)},
        )
        assert status == 200
        assert body["body"]["method"] == "GET"
        assert body["body"]["path"] == "/echo/x"
    finally:
        await svc.stop(grace=1.0)


async def test_the_application_down(server: MicroServer, client: Client) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    svc = await sidecar(server, "gone", url)
    try:
        with pytest.raises(MicroError) as err:
            await client.call("gone", "Gone.Call", {"path": "/"})
        assert (err.value.status, err.value.code) == (503, "unavailable")
        status, body = await gateway(
            server, "/gone/call", {}, {"Authorization": await admin_header(server)}
        )
        assert status == 503
        assert body["code"] == "unavailable"
    finally:
        await svc.stop(grace=1.0)
