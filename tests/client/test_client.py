"""Client behaviour against real services: selection, failover, retries, registry watch."""

from __future__ import annotations

import asyncio
import os

import msgspec
import pytest

from micro import Client, Context, MicroError, Service, idempotent
from micro.registry import Node, ServiceInfo
from micro.registry.memory import MemoryRegistry
from micro.testing import eventually


class Req(msgspec.Struct):
    value: str = ""


class Resp(msgspec.Struct):
    node: str
    value: str = ""


def make(registry: MemoryRegistry, tag: str, calls: list[str] | None = None) -> Service:
    svc = Service("echo", registry=registry, address="127.0.0.1:0")

    class Echo:
        async def call(self, ctx: Context, req: Req) -> Resp:
            return Resp(tag, req.value)

        async def hang(self, ctx: Context, req: Req) -> Resp:
            if calls is not None:
                calls.append(tag)
            await asyncio.sleep(30)
            return Resp(tag)

        @idempotent
        async def hang_idempotent(self, ctx: Context, req: Req) -> Resp:
            if calls is not None:
                calls.append(tag)
            if tag == "a":
                await asyncio.sleep(30)
            return Resp(tag)

    svc.handler(Echo())
    return svc


async def test_round_robin_spreads_calls_over_nodes() -> None:
    reg = MemoryRegistry()
    a, b = make(reg, "a"), make(reg, "b")
    await a.start()
    await b.start()
    client = Client(reg)
    try:
        seen = [
            (await client.call("echo", "Echo.Call", Req(), response_type=Resp)).node
            for _ in range(6)
        ]
        assert sorted(seen) == ["a", "a", "a", "b", "b", "b"]
        assert all(seen[i] != seen[i + 1] for i in range(5))
    finally:
        await client.close()
        await a.stop()
        await b.stop()


async def test_random_selector_uses_every_node() -> None:
    reg = MemoryRegistry()
    a, b = make(reg, "a"), make(reg, "b")
    await a.start()
    await b.start()
    client = Client(reg, selector="random")
    try:
        seen = {
            (await client.call("echo", "Echo.Call", Req(), response_type=Resp)).node
            for _ in range(64)
        }
        assert seen == {"a", "b"}
    finally:
        await client.close()
        await a.stop()
        await b.stop()


async def test_dead_node_in_registry_is_skipped() -> None:
    reg = MemoryRegistry()
    live = make(reg, "live")
    await live.start()
    # a node that registered and then died without deregistering: nothing listens there
    await reg.register(ServiceInfo("echo", nodes=[Node("dead", "127.0.0.1:9")]), ttl=60)
    client = Client(reg)
    try:
        for _ in range(4):
            resp = await client.call("echo", "Echo.Call", Req("x"), response_type=Resp)
            assert resp.node == "live"
    finally:
        await client.close()
        await live.stop()


async def test_no_node_reachable_is_unavailable_naming_them() -> None:
    reg = MemoryRegistry()
    await reg.register(ServiceInfo("echo", nodes=[Node("dead", "127.0.0.1:9")]), ttl=60)
    async with Client(reg) as client:
        with pytest.raises(MicroError) as info:
            await client.call("echo", "Echo.Call", Req())
    assert info.value.status == 503
    assert "127.0.0.1:9" in info.value.detail


async def test_unknown_service_is_404() -> None:
    async with Client(MemoryRegistry()) as client:
        with pytest.raises(MicroError) as info:
            await client.call("ghost", "Ghost.Call", {})
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert "ghost" in info.value.detail


async def _kill_server_connections(svc: Service) -> None:
    assert svc.server is not None
    for conn in list(svc.server.connections):
        conn.abort()


async def test_lost_connection_is_not_retried_for_plain_endpoints() -> None:
    reg = MemoryRegistry()
    calls: list[str] = []
    a, b = make(reg, "a", calls), make(reg, "b", calls)
    await a.start()
    await b.start()
    client = Client(reg)
    try:
        call = asyncio.ensure_future(client.call("echo", "Echo.Hang", Req()))
        await eventually(lambda: bool(calls))
        victim = a if calls[0] == "a" else b
        await _kill_server_connections(victim)
        with pytest.raises(MicroError) as info:
            await call
        assert info.value.status == 503
        assert "not retried" in info.value.detail
        assert len(calls) == 1  # it ran once and was never sent again
    finally:
        await client.close()
        await a.stop(grace=0.1)
        await b.stop(grace=0.1)


async def test_lost_connection_is_retried_for_idempotent_endpoints() -> None:
    reg = MemoryRegistry()
    calls: list[str] = []
    a, b = make(reg, "a", calls), make(reg, "b", calls)
    a.node_id, b.node_id = "0-a", "1-b"  # the selector below tries "a" first
    await a.start()
    await b.start()
    client = Client(reg, selector=lambda service, nodes: min(nodes, key=lambda n: n.id))
    try:
        call = asyncio.ensure_future(
            client.call("echo", "Echo.HangIdempotent", Req(), response_type=Resp)
        )
        await eventually(lambda: bool(calls))
        assert calls == ["a"]
        await _kill_server_connections(a)
        resp = await asyncio.wait_for(call, 5)
        assert resp.node == "b"
        assert calls == ["a", "b"]
    finally:
        await client.close()
        await a.stop(grace=0.1)
        await b.stop(grace=0.1)


async def test_watch_keeps_the_cached_view_fresh() -> None:
    reg = MemoryRegistry()
    a = make(reg, "a")
    await a.start()
    client = Client(reg)
    try:
        assert (await client.call("echo", "Echo.Call", Req(), response_type=Resp)).node == "a"
        b = make(reg, "b")
        await b.start()
        await a.stop()
        for _ in range(50):  # the watch delivers the change; no call goes to the stopped node
            nodes = client.view.nodes("echo") if client.view else None
            if nodes is not None and [n.address for n in nodes] == [b.address]:
                break
            await asyncio.sleep(0.01)
        for _ in range(3):
            assert (await client.call("echo", "Echo.Call", Req(), response_type=Resp)).node == "b"
        await b.stop()
    finally:
        await client.close()


async def test_request_over_the_frame_limit_fails_before_sending() -> None:
    reg = MemoryRegistry()
    a = make(reg, "a")
    await a.start()
    client = Client(reg, max_frame=64 * 1024)
    try:
        with pytest.raises(MicroError) as info:
            await client.call("echo", "Echo.Call", Req("x" * 100_000))
        assert info.value.code == "too_large"
        assert (await client.call("echo", "Echo.Call", Req("ok"), response_type=Resp)).value == "ok"
    finally:
        await client.close()
        await a.stop()


async def test_running_service_registers_its_node_with_pid() -> None:
    reg = MemoryRegistry()
    svc = make(reg, "a")
    assert svc.info().nodes == []  # not running: no node
    await svc.start()
    try:
        (info,) = await reg.get_service("echo")
        assert [n.address for n in info.nodes] == [svc.address]
        assert info.nodes[0].metadata["pid"] == str(os.getpid())
        own = {e.name for e in info.endpoints if not e.name.startswith("Debug.")}
        assert own == {"Echo.Call", "Echo.Hang", "Echo.HangIdempotent"}
        assert info.endpoint("Echo.HangIdempotent").metadata == {"idempotent": "true"}  # type: ignore[union-attr]
    finally:
        await svc.stop()
    with pytest.raises(MicroError):
        await reg.get_service("echo")  # deregistered on stop
