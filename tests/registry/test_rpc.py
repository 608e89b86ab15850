"""The registry over RPC, as services and the CLI use it, against a real in-process server."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from micro import Context, MicroError, Service
from micro.registry import Event, Node, ServiceInfo
from micro.registry.rpc import RpcRegistry
from micro.server import MicroServer
from micro.testing import eventually
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)


class Req(msgspec.Struct):
    pass


async def test_register_get_list_deregister_over_rpc(micro_server: MicroServer) -> None:
    reg = RpcRegistry(micro_server.address)
    try:
        info = ServiceInfo("svc", "v1", {"team": "a"}, nodes=[Node("n1", "127.0.0.1:1234")])
        await reg.register(info, ttl=30)
        (got,) = await reg.get_service("svc")
        assert (got.version, got.metadata, [n.id for n in got.nodes]) == (
            "v1",
            {"team": "a"},
            ["n1"],
        )
        assert "svc" in {s.name for s in await reg.list_services()}
        await reg.deregister(info)
        with pytest.raises(MicroError) as err:
            await reg.get_service("svc")
        assert err.value.status == 404
    finally:
        await reg.close()


async def test_watch_over_rpc_streams_changes(micro_server: MicroServer) -> None:
    reg = RpcRegistry(micro_server.address)
    watcher = reg.watch("svc")
    events: list[Event] = []

    async def collect() -> None:
        async for event in watcher:
            events.append(event)

    task = asyncio.ensure_future(collect())
    try:
        info = ServiceInfo("svc", nodes=[Node("n1", "127.0.0.1:1234")])
        other = ServiceInfo("other", nodes=[Node("o1", "127.0.0.1:1235")])

        # the watch subscribes when its stream opens: register until the watcher sees it
        async def seen_create() -> bool:
            await reg.deregister(info)
            await reg.register(info, ttl=30)
            return any(e.type == "create" for e in events)

        await eventually(seen_create, message="create event")
        await reg.register(other, ttl=30)
        await reg.deregister(info)
        await eventually(lambda: any(e.type == "delete" for e in events), message="delete")
        assert {e.service.name for e in events} == {"svc"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reg.close()


async def test_a_service_that_stops_heartbeating_expires(micro_server: MicroServer) -> None:
    svc = Service("mortal", register_ttl=0.5, register_interval=0.1)

    @svc.handler
    class Mortal:
        async def call(self, ctx: Context, req: Req) -> Req:
            return req

    svc.use(registry=micro_server.registry)
    await svc.start()
    try:
        assert await micro_server.registry.get_service("mortal")
        assert svc._heartbeat is not None
        svc._heartbeat.cancel()  # as if the process froze or was killed: no deregistration

        async def gone() -> bool:
            try:
                await micro_server.registry.get_service("mortal")
            except MicroError:
                return True
            return False

        await eventually(gone, timeout=5, message="expired")
    finally:
        await svc.stop()
