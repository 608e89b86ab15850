"""Services of a namespace other than ``micro`` through ``micro proxy``: the proxy resolves
them as the caller (the registry's tenancy applies to the caller's token), so a client of
``acme`` that knows only the proxy sees and calls acme's services, and nobody else reaches
them by acme's names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from micro import Context, Service
from micro.auth.rpc import RpcAuth
from micro.auth.verify import Verifier
from micro.client import Client
from micro.errors import MicroError
from micro.proxy import Proxy
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer
from micro.testing import admin_header, start_server

pytestmark = pytest.mark.timeout(60)


class Req(msgspec.Struct):
    name: str = ""
    count: int = 0


class Resp(msgspec.Struct):
    message: str
    account: str = ""


def greeter(greeting: str) -> Service:
    svc = Service("greeter")

    @svc.handler
    class Greeter:
        async def call(self, ctx: Context, req: Req) -> Resp:
            who = f"{ctx.account.namespace}/{ctx.account.sub}" if ctx.account else ""
            return Resp(f"{greeting} {req.name}", who)

        async def count(self, ctx: Context, req: Req) -> AsyncIterator[Resp]:
            for i in range(req.count):
                yield Resp(f"{greeting} {i}")

    return svc


@dataclass
class Setup:
    server: MicroServer
    proxy: Proxy
    acme: str  # authorization of an admin of namespace acme
    admin: str  # authorization of the admin of micro


def header_of(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    server = await start_server(tmp_path / "data", gateway=False)
    assert server.auth is not None
    _, secret = await server.auth.create_account("ops", namespace="acme", scopes=["admin"])
    acme = header_of((await server.auth.login("ops", secret, "acme")).access_token)
    # acme's greeter registers with the server itself (no proxy), as acme
    acme_registry = RpcRegistry(server.address, credentials=lambda: acme)
    acme_svc = greeter("Howdy")
    acme_svc.use(registry=acme_registry, auth=server.guard)
    await acme_svc.start()
    # a service of micro, to be invisible to acme
    hello = Service("helloworld")

    @hello.handler
    class Helloworld:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp("hello")

    hello.use(registry=server.registry, auth=server.guard)
    await hello.start()
    upstream = Client(RpcRegistry(server.address))  # the proxy's own: anonymous
    verifier = Verifier(fetch=RpcAuth(server.address, client=upstream).jwks)
    proxy = Proxy(upstream, address="127.0.0.1:0", verifier=verifier)
    await proxy.start()
    try:
        yield Setup(server, proxy, acme, await admin_header(server))
    finally:
        await proxy.stop(grace=1.0)
        await upstream.close()
        assert upstream.view is not None
        await upstream.view.registry.close()
        await hello.stop(grace=1.0)
        await acme_svc.stop(grace=1.0)
        await acme_registry.close()
        await server.stop()


async def via_proxy(setup: Setup, header: str) -> Client:
    """A client calling with ``header`` that knows only the proxy's address."""
    registry = RpcRegistry(setup.proxy.address, credentials=lambda: header)
    return Client(registry, credentials=lambda: header, timeout=5.0)


async def close(client: Client) -> None:
    await client.close()
    assert client.view is not None
    await client.view.registry.close()


async def test_a_caller_of_acme_sees_and_calls_acmes_services(setup: Setup) -> None:
    client = await via_proxy(setup, setup.acme)
    try:
        assert client.view is not None
        services = await client.view.registry.list_services()
        # the registry showed acme's services only, by their plain names, at the proxy
        assert {s.name for s in services} == {"greeter"}
        assert {n.address for s in services for n in s.nodes} == {setup.proxy.address}
        resp = await client.call("greeter", "Greeter.Call", Req("Ann"), response_type=Resp)
        assert resp == Resp("Howdy Ann", "acme/ops")  # acme's greeter, with acme's token
        got = [
            r.message
            async for r in client.stream(
                "greeter", "Greeter.Count", Req(count=2), response_type=Resp, timeout=5.0
            )
        ]
        assert got == ["Howdy 0", "Howdy 1"]
        assert set(client.pool.conns) == {setup.proxy.address}
        # a confined caller cannot name another namespace's service
        with pytest.raises(MicroError) as err:
            await client.call("micro/helloworld", "Helloworld.Call", Req())
        assert err.value.status == 400
        # nor reach micro's helloworld under its own name: acme has none
        with pytest.raises(MicroError) as err:
            await client.call("helloworld", "Helloworld.Call", Req())
        assert err.value.status == 404
        # the platform's services are the same for every namespace (the registry does not
        # list them to acme: they are called at the server's address, here the proxy's)
        jwks = await client.call("auth", "Auth.Jwks", {}, address=setup.proxy.address)
        assert jwks["keys"]
    finally:
        await close(client)


async def test_a_fresh_proxy_resolves_as_the_caller_without_a_registry_read_first(
    setup: Setup,
) -> None:
    """A call straight to the proxy (no ListServices/GetService through it before): the
    proxy reads the registry with the caller's token."""
    anonymous = Client(timeout=5.0)
    try:
        reply = await anonymous.call(
            "greeter",
            "Greeter.Call",
            Req("Bob"),
            address=setup.proxy.address,
            metadata={"authorization": setup.acme},
        )
        assert reply == {"message": "Howdy Bob", "account": "acme/ops"}
    finally:
        await anonymous.close()


async def test_the_admin_of_micro_does_not_see_acmes_service_unprefixed(setup: Setup) -> None:
    client = await via_proxy(setup, setup.admin)
    try:
        assert client.view is not None
        names = {s.name for s in await client.view.registry.list_services()}
        assert "greeter" not in names
        assert {"acme/greeter", "helloworld", "registry"} <= names  # names as stored
        with pytest.raises(MicroError) as err:
            await client.call("greeter", "Greeter.Call", Req())
        assert err.value.status == 404
        # unrestricted, it reaches acme's service by its stored name
        resp = await client.call("acme/greeter", "Greeter.Call", Req("Op"), response_type=Resp)
        assert resp == Resp("Howdy Op", "micro/admin")
        resp = await client.call("helloworld", "Helloworld.Call", Req(), response_type=Resp)
        assert resp.message == "hello"
    finally:
        await close(client)


async def test_anonymous_registry_reads_show_micro_only(setup: Setup) -> None:
    anonymous = Client(timeout=5.0)
    try:
        listed = await anonymous.call(
            "registry", "Registry.ListServices", {}, address=setup.proxy.address
        )
        names = {s["name"] for s in listed["services"]}
        assert "helloworld" in names
        assert not {"greeter", "acme/greeter"} & names
    finally:
        await anonymous.close()
