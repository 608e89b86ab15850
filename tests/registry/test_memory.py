"""The in-memory registry: registration, TTL expiry with a fake clock, watch events."""

from __future__ import annotations

import asyncio

import pytest

from micro.errors import MicroError
from micro.registry import EndpointInfo, Event, Node, ServiceInfo
from micro.registry.memory import MemoryRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def svc(*node_ids: str, version: str = "latest", name: str = "greeter") -> ServiceInfo:
    return ServiceInfo(
        name,
        version,
        endpoints=[EndpointInfo("Greeter.Call", {"type": "object"})],
        nodes=[Node(n, f"127.0.0.1:{9000 + i}") for i, n in enumerate(node_ids)],
    )


async def test_register_get_list() -> None:
    reg = MemoryRegistry()
    await reg.register(svc("a", "b"), ttl=10)
    await reg.register(svc("c", version="v2"), ttl=10)
    found = await reg.get_service("greeter")
    assert {s.version for s in found} == {"latest", "v2"}
    latest = next(s for s in found if s.version == "latest")
    assert {n.id for n in latest.nodes} == {"a", "b"}
    assert latest.endpoints[0].name == "Greeter.Call"
    assert [(s.name, s.version) for s in await reg.list_services()] == [
        ("greeter", "latest"),
        ("greeter", "v2"),
    ]


async def test_unknown_service_is_not_found() -> None:
    with pytest.raises(MicroError) as info:
        await MemoryRegistry().get_service("nope")
    assert info.value.code == "not_found"
    assert "nope" in info.value.detail


async def test_bad_registrations_are_refused() -> None:
    reg = MemoryRegistry()
    with pytest.raises(MicroError, match="name"):
        await reg.register(ServiceInfo(""), ttl=1)
    with pytest.raises(MicroError, match="ttl"):
        await reg.register(svc("a"), ttl=-1)


async def test_nodes_expire_without_heartbeat_and_live_with_it() -> None:
    clock = Clock()
    reg = MemoryRegistry(clock)
    await reg.register(svc("a"), ttl=10)
    await reg.register(svc("b"), ttl=10)
    clock.now += 6
    await reg.register(svc("b"), ttl=10)  # heartbeat for b only
    clock.now += 6  # a is 12 s old, b 6 s
    nodes = (await reg.get_service("greeter"))[0].nodes
    assert [n.id for n in nodes] == ["b"]
    clock.now += 20
    with pytest.raises(MicroError):
        await reg.get_service("greeter")
    assert await reg.list_services() == []


async def test_deregister_removes_nodes_then_version() -> None:
    reg = MemoryRegistry()
    await reg.register(svc("a", "b"), ttl=None)
    await reg.deregister(svc("a"))
    assert [n.id for n in (await reg.get_service("greeter"))[0].nodes] == ["b"]
    await reg.deregister(svc("b"))
    with pytest.raises(MicroError):
        await reg.get_service("greeter")
    await reg.deregister(svc("zzz"))  # unknown: no error


async def next_event(it: object) -> Event:
    return await asyncio.wait_for(it.__anext__(), 2)  # type: ignore[attr-defined]


async def test_watch_sees_create_update_delete_and_expiry() -> None:
    clock = Clock()
    reg = MemoryRegistry(clock)
    watch = reg.watch()
    pending = asyncio.ensure_future(next_event(watch))
    await asyncio.sleep(0)
    await reg.register(svc("a"), ttl=5)
    first = await pending
    assert (first.type, [n.id for n in first.service.nodes]) == ("create", ["a"])
    await reg.register(svc("a"), ttl=5)  # a heartbeat changes nothing: no event
    await reg.register(svc("b"), ttl=50)
    second = await next_event(watch)
    assert second.type == "update"
    assert {n.id for n in second.service.nodes} == {"a", "b"}
    clock.now += 10
    assert reg.reap() == 1
    third = await next_event(watch)
    assert (third.type, [n.id for n in third.service.nodes]) == ("update", ["b"])
    await reg.deregister(svc("b"))
    fourth = await next_event(watch)
    assert fourth.type == "delete"
    await watch.aclose()


async def test_watch_filtered_by_service() -> None:
    reg = MemoryRegistry()
    watch = reg.watch("other")
    pending = asyncio.ensure_future(next_event(watch))
    await asyncio.sleep(0)
    await reg.register(svc("a"), ttl=5)
    await reg.register(svc("x", name="other"), ttl=5)
    event = await pending
    assert event.service.name == "other"
    await watch.aclose()
