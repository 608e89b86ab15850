"""Two `micro server`s on the same PostgreSQL, NATS and etcd form one platform."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from micro import Context, Service
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer, ServerOptions
from micro.store.rpc import RpcStore
from micro.testing import admin_client, admin_header, eventually


class Req(msgspec.Struct):
    name: str


class Resp(msgspec.Struct):
    message: str


@pytest.fixture
async def two_servers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    nats_url: str,
    etcd_endpoint: str,
) -> AsyncIterator[tuple[MicroServer, MicroServer]]:
    monkeypatch.setenv("MICRO_POSTGRES_DSN", postgres_dsn)
    monkeypatch.setenv("MICRO_NATS_URL", nats_url)
    monkeypatch.setenv("MICRO_ETCD_ENDPOINTS", etcd_endpoint)
    # every server of a cluster shares the secret key of config values
    monkeypatch.setenv("MICRO_CONFIG_SECRET_KEY", base64.b64encode(b"k" * 32).decode())
    servers = [
        MicroServer(
            ServerOptions(
                address="127.0.0.1:0",
                gateway="127.0.0.1:0",
                data_dir=tmp_path / name,
                runtime=False,
                profile="cluster",
            )
        )
        for name in ("a", "b")
    ]
    started: list[MicroServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        yield servers[0], servers[1]
    finally:
        for server in reversed(started):
            await server.stop()


async def test_a_service_registered_through_one_is_callable_through_the_other(
    two_servers: tuple[MicroServer, MicroServer],
) -> None:
    a, b = two_servers
    # auth is on and its data is shared: a token issued by a is honoured by b
    header = await admin_header(a)
    svc = Service("greeter", registry=RpcRegistry(a.address, credentials=lambda: header))

    @svc.handler
    class Greeter:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(f"Hello {req.name}")

    await svc.start()
    try:
        assert b.gateway is not None
        url = f"http://{b.gateway.address}/greeter/call"

        async def answered() -> bool:
            auth = {"Authorization": header}
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, json={"name": "B"}, headers=auth) as r,
            ):
                return r.status == 200 and await r.json() == {"message": "Hello B"}

        await eventually(answered, timeout=10, message="call through the other server")
        # data written through one server is read through the other
        async with admin_client(a) as client_a, admin_client(b) as client_b:
            via_a, via_b = RpcStore(a.address, client_a), RpcStore(b.address, client_b)
            await via_a.write("micro", "shared", "k", b"v")
            (record,) = await via_b.read("micro", "shared", "k")
        assert record.value == b"v"
        # with server a gone, b keeps serving (the node registered through a lives in etcd)
        await a.stop()
        await eventually(answered, timeout=10, message="call with one server stopped")
    finally:
        await svc.stop()
