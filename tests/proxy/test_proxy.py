"""``micro proxy`` in front of a real server with auth on: clients that know only the
proxy's address list services, call them (unary and streams) and are authenticated there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from micro import Context, Service, public
from micro.auth.rpc import RpcAuth
from micro.auth.verify import Verifier
from micro.client import Client
from micro.errors import MicroError
from micro.proxy import Proxy
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer
from micro.testing import admin_header, start_server
from micro.transport.frames import Codec

pytestmark = pytest.mark.timeout(60)


class Req(msgspec.Struct):
    name: str = ""
    count: int = 0


class Resp(msgspec.Struct):
    message: str
    caller: str = ""
    deadline: bool = False


def helloworld() -> Service:
    svc = Service("helloworld")

    @svc.handler
    class Helloworld:
        @public
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(
                f"Hello {req.name}",
                ctx.account.sub if ctx.account else "",
                ctx.deadline is not None,
            )

        async def secret(self, ctx: Context, req: Req) -> Resp:
            assert ctx.account is not None
            return Resp("classified", ctx.account.sub)

        async def stream(self, ctx: Context, req: Req) -> AsyncIterator[Resp]:
            for i in range(req.count):
                yield Resp(f"{req.name} {i}")

        async def total(self, ctx: Context, req: AsyncIterator[Req]) -> Resp:
            return Resp(str(sum([r.count async for r in req])))

        async def echo(self, ctx: Context, req: AsyncIterator[Req]) -> AsyncIterator[Resp]:
            async for r in req:
                yield Resp(r.name.upper())

    return svc


@dataclass
class Setup:
    server: MicroServer
    proxy: Proxy
    header: str


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    server = await start_server(tmp_path / "data", gateway=False)
    svc = helloworld()
    svc.use(registry=server.registry, auth=server.guard)
    await svc.start()
    # the proxy's own client calls anonymously: registry reads and the JWKS are public
    upstream = Client(RpcRegistry(server.address))
    verifier = Verifier(fetch=RpcAuth(server.address, client=upstream).jwks)
    proxy = Proxy(upstream, address="127.0.0.1:0", verifier=verifier)
    await proxy.start()
    try:
        yield Setup(server, proxy, await admin_header(server))
    finally:
        await proxy.stop(grace=1.0)
        await upstream.close()
        assert upstream.view is not None
        await upstream.view.registry.close()
        await svc.stop(grace=1.0)
        await server.stop()


@pytest.fixture
async def via_proxy(setup: Setup) -> AsyncIterator[Client]:
    """A client (as admin) that knows only the proxy's address."""
    header = setup.header
    registry = RpcRegistry(setup.proxy.address, credentials=lambda: header)
    client = Client(registry, credentials=lambda: header, timeout=5.0)
    try:
        yield client
    finally:
        await client.close()
        await registry.close()


async def test_lists_services_with_the_proxy_as_their_only_node(
    setup: Setup, via_proxy: Client
) -> None:
    assert via_proxy.view is not None
    services = await via_proxy.view.registry.list_services()
    names = {s.name for s in services}
    assert {"helloworld", "registry", "auth"} <= names
    addresses = {n.address for s in services for n in s.nodes}
    assert addresses == {setup.proxy.address}
    assert setup.proxy.address != setup.server.address
    (hello,) = await via_proxy.view.registry.get_service("helloworld")
    assert [n.address for n in hello.nodes] == [setup.proxy.address]


async def test_unary_call_goes_through_with_the_callers_token_and_deadline(
    setup: Setup, via_proxy: Client
) -> None:
    before = setup.proxy.forwarded_total
    resp = await via_proxy.call("helloworld", "Helloworld.Secret", Req(), response_type=Resp)
    assert resp == Resp("classified", "admin")
    resp = await via_proxy.call(
        "helloworld", "Helloworld.Call", Req("Alice"), response_type=Resp, timeout=3.0
    )
    assert resp == Resp("Hello Alice", "admin", True)
    assert setup.proxy.forwarded_total >= before + 2
    # every connection the client opened is to the proxy
    assert set(via_proxy.pool.conns) == {setup.proxy.address}


async def test_json_bodies_pass_through_untouched(setup: Setup, via_proxy: Client) -> None:
    reply = await via_proxy.call_raw(
        "helloworld",
        "Helloworld.Call",
        b'{"name": "Json"}',
        codec=Codec.JSON,
        address=setup.proxy.address,
    )
    assert msgspec.json.decode(reply) == {
        "message": "Hello Json",
        "caller": "admin",
        "deadline": True,
    }
    reply = await via_proxy.call_raw(
        "registry",
        "Registry.GetService",
        b'{"name": "helloworld"}',
        codec=Codec.JSON,
        address=setup.proxy.address,
    )
    nodes = msgspec.json.decode(reply)["services"][0]["nodes"]
    assert [n["address"] for n in nodes] == [setup.proxy.address]


async def test_server_stream(via_proxy: Client) -> None:
    got = [
        r.message
        async for r in via_proxy.stream(
            "helloworld", "Helloworld.Stream", Req("n", 3), response_type=Resp, timeout=5.0
        )
    ]
    assert got == ["n 0", "n 1", "n 2"]


async def test_client_and_bidi_streams(via_proxy: Client) -> None:
    stream = via_proxy.stream("helloworld", "Helloworld.Total", response_type=Resp, timeout=5.0)
    for n in (1, 2, 3):
        await stream.send(Req(count=n))
    assert await stream.response() == Resp("6")
    bidi = via_proxy.stream("helloworld", "Helloworld.Echo", response_type=Resp, timeout=5.0)
    async with bidi:
        await bidi.send(Req("a"))
        assert (await bidi.receive()).message == "A"
        await bidi.send(Req("b"))
        await bidi.close_send()
        assert [r.message async for r in bidi] == ["B"]


async def test_a_registry_watch_through_the_proxy_shows_its_address(
    setup: Setup, via_proxy: Client
) -> None:
    assert via_proxy.view is not None
    events = via_proxy.view.registry.watch("late")
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)  # the watch request is on its way before the service registers
    late = Service("late")

    @late.handler
    class Late:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp("late")

    late.use(registry=setup.server.registry, auth=setup.server.guard)
    await late.start()
    registry = setup.server.registry
    try:
        for _ in range(50):  # until the watch is open on the server: register again
            done, _ = await asyncio.wait({first}, timeout=0.1)
            if done:
                break
            await registry.deregister(late.info())
            await registry.register(late.info(), 15.0)
        event = await asyncio.wait_for(first, 5.0)
        assert event.service.name == "late"
        while event.type == "delete":
            event = await asyncio.wait_for(anext(events), 5.0)
        assert [n.address for n in event.service.nodes] == [setup.proxy.address]
        # and the proxy learned the new service's endpoints from its own watch
        resp = await via_proxy.call("late", "Late.Call", Req(), response_type=Resp)
        assert resp.message == "late"
    finally:
        await events.aclose()
        await late.stop(grace=1.0)


async def test_anonymous_and_bad_tokens_are_refused_by_the_proxy(setup: Setup) -> None:
    forwarded = setup.proxy.forwarded_total
    anonymous = Client(timeout=5.0)
    try:
        with pytest.raises(MicroError) as err:
            await anonymous.call(
                "helloworld", "Helloworld.Secret", Req(), address=setup.proxy.address
            )
        assert err.value.status == 401
        assert "proxy" in err.value.detail
        # even an endpoint the service made public needs a token at the proxy
        with pytest.raises(MicroError) as err:
            await anonymous.call(
                "helloworld", "Helloworld.Call", Req(), address=setup.proxy.address
            )
        assert err.value.status == 401
        assert setup.proxy.forwarded_total == forwarded  # refused before forwarding
        for header in ("Bearer not-a-token", setup.header[:-4] + "AAAA"):
            with pytest.raises(MicroError) as err:
                await anonymous.call(
                    "helloworld",
                    "Helloworld.Secret",
                    Req(),
                    address=setup.proxy.address,
                    metadata={"authorization": header},
                )
            assert err.value.status == 401
        with pytest.raises(MicroError) as err:
            stream = anonymous.stream(
                "helloworld", "Helloworld.Stream", Req("x", 1), address=setup.proxy.address
            )
            [r async for r in stream]
        assert err.value.status == 401
        # logging in and reading the registry stay public, and anonymous calls are
        # forwarded as anonymous (never with the proxy's own credentials)
        jwks = await anonymous.call("auth", "Auth.Jwks", {}, address=setup.proxy.address)
        assert jwks["keys"]
        listed = await anonymous.call(
            "registry", "Registry.ListServices", {}, address=setup.proxy.address
        )
        assert "helloworld" in {s["name"] for s in listed["services"]}
    finally:
        await anonymous.close()


async def test_the_cli_pointed_at_the_proxy(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MICRO_SERVER=<proxy>``: the CLI's connect() logs in (the local API key is exchanged
    through the proxy), lists services and calls helloworld."""
    from micro.cli.common import connect

    monkeypatch.setenv("MICRO_SERVER", setup.proxy.address)
    monkeypatch.setenv("MICRO_DATA_DIR", str(setup.server.options.data_dir))
    for name in ("MICRO_ENV", "MICRO_AUTH_ID", "MICRO_AUTH_SECRET", "MICRO_API_KEY", "MICRO_TLS"):
        monkeypatch.delenv(name, raising=False)
    async with connect() as client:
        assert client.view is not None
        names = {s.name for s in await client.view.registry.list_services()}
        assert "helloworld" in names
        resp = await client.call("helloworld", "Helloworld.Secret", Req(), response_type=Resp)
        assert resp == Resp("classified", "admin")
        assert set(client.pool.conns) == {setup.proxy.address}


async def test_unknown_services_and_unreachable_nodes(setup: Setup, via_proxy: Client) -> None:
    with pytest.raises(MicroError) as err:
        await via_proxy.call("nosuch", "Nosuch.Call", Req(), address=setup.proxy.address)
    assert err.value.status == 404
