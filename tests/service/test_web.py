"""A service that serves HTTP itself (``service.web(app)``), reached through the gateway's
``/web/{service}/...`` reverse proxy of a real server."""

from __future__ import annotations

import aiohttp
import msgspec
from fastapi import FastAPI

from micro import Context, Service
from micro.server import MicroServer
from tests.noauth import micro_server  # noqa: F401 (auth off: tests/gateway cover auth)


class Req(msgspec.Struct):
    name: str


class Resp(msgspec.Struct):
    message: str


async def test_a_service_with_a_web_app_is_proxied_by_the_gateway(
    micro_server: MicroServer,
) -> None:
    app = FastAPI()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    svc = Service("site", registry=micro_server.registry)

    @svc.handler
    class Site:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(req.name)

    svc.web(app)
    await svc.start()
    try:
        (node,) = svc.info().nodes
        assert node.metadata["web"].startswith("http://127.0.0.1:")
        assert micro_server.gateway is not None
        base = f"http://{micro_server.gateway.address}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/web/site/hello/ann") as resp:
                assert (resp.status, await resp.json()) == (200, {"hello": "ann"})
            async with http.post(f"{base}/site/call", json={"name": "rpc"}) as resp:
                assert (resp.status, await resp.json()) == (200, {"message": "rpc"})
    finally:
        await svc.stop()
    assert svc.info().nodes == []
