"""The behaviour every :class:`~micro.registry.Registry` backend must show.

Subclass :class:`RegistryConformance` and provide three fixtures: ``clock`` (a
:class:`~micro.testing.conformance.clock.FakeClock`), ``registry`` (the backend under test,
empty, reading time from that clock where it computes expiry itself) and ``expire``, an
async action ``await expire(seconds)`` that lets ``seconds`` pass for TTL purposes: advance
the clock and reap for an in-process backend, a real sleep where the engine enforces TTLs
itself (etcd leases). :attr:`RegistryConformance.TTL` is the TTL the expiry cases use; a
backend with a minimum lease time overrides it::

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        def clock(self) -> FakeClock:
            return FakeClock()

        @pytest.fixture
        async def registry(self, clock: FakeClock) -> AsyncIterator[Registry]:
            backend = MyRegistry(clock=clock)
            yield backend
            await backend.close()

        @pytest.fixture
        def expire(self, clock: FakeClock, registry: MyRegistry) -> Expire:
            async def run(seconds: float) -> None:
                clock.advance(seconds)
                registry.reap()
            return run

Watch cases do not assume the watch is live the moment ``watch()`` returns (a remote
watch subscribes when its stream opens): they first register a probe version until the
watcher reports it, then check the exact events that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ...errors import MicroError
from ...registry import EndpointInfo, Event, Node, Registry, ServiceInfo
from .. import eventually

__all__ = ["Expire", "RegistryConformance", "Watching", "watching"]

Expire = Callable[[float], Awaitable[None]]

PROBE = "~probe"


def svc(name: str, *nodes: str, version: str = "1.0.0", **metadata: str) -> ServiceInfo:
    """A service version with one node per id (addresses derived from the ids)."""
    return ServiceInfo(
        name,
        version=version,
        metadata=dict(metadata),
        endpoints=[EndpointInfo("Greeter.Hello", {"type": "object"}, {"type": "object"})],
        nodes=[Node(n, f"127.0.0.1:{1000 + i}", {"zone": "a"}) for i, n in enumerate(nodes)],
    )


def node_ids(info: ServiceInfo) -> set[str]:
    """The ids of a service's nodes."""
    return {n.id for n in info.nodes}


async def fails(code: str, call: Awaitable[Any], *words: str) -> MicroError:
    """Await ``call``; it must raise a :class:`MicroError` with ``code`` mentioning ``words``."""
    with pytest.raises(MicroError) as info:
        await call
    assert info.value.code == code, info.value
    for word in words:
        assert word in info.value.detail, (word, info.value.detail)
    return info.value


class Watching:
    """Collects a watcher's events in the background; :meth:`prime` waits until it is live."""

    def __init__(self, registry: Registry, service: str | None) -> None:
        self.registry = registry
        self.service = service or "probe-service"
        self.watcher = registry.watch(service)
        self.all: list[Event] = []
        self.task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for event in self.watcher:
            self.all.append(event)

    @property
    def events(self) -> list[Event]:
        """What was seen, without the probe's events."""
        return [e for e in self.all if e.service.version != PROBE]

    def _probes(self, kind: str) -> int:
        return sum(1 for e in self.all if e.service.version == PROBE and e.type == kind)

    async def prime(self) -> None:
        """Register a probe version until the watcher sees it, then remove it."""
        probe = ServiceInfo(self.service, version=PROBE, nodes=[Node("probe", "127.0.0.1:9")])

        async def seen() -> bool:
            await self.registry.deregister(probe)
            await self.registry.register(probe)
            return self._probes("create") > 0

        await eventually(seen, message="the watcher to start")
        deletes = self._probes("delete")
        await self.registry.deregister(probe)
        await eventually(lambda: self._probes("delete") > deletes, message="probe delete")

    async def wait(self, count: int) -> list[Event]:
        """Wait (bounded) until ``count`` events (probe aside) arrived; return them."""
        await eventually(lambda: len(self.events) >= count, message=f"{count} events")
        return self.events

    async def close(self) -> None:
        """Stop collecting and close the watcher."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        aclose = getattr(self.watcher, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


@contextlib.asynccontextmanager
async def watching(registry: Registry, service: str | None = None) -> AsyncIterator[Watching]:
    """A primed :class:`Watching`, closed on exit."""
    watch = Watching(registry, service)
    try:
        await watch.prime()
        yield watch
    finally:
        await watch.close()


class RegistryConformance:
    """Every registry backend passes these cases."""

    TTL = 2.0  # seconds; the etcd suite needs whole seconds above etcd's minimum lease

    async def test_register_then_get(self, registry: Registry) -> None:
        info = svc("greeter", "n1", owner="team")
        await registry.register(info, ttl=60)
        found = await registry.get_service("greeter")
        assert found == [info]

    async def test_get_unknown_is_not_found(self, registry: Registry) -> None:
        await fails("not_found", registry.get_service("nobody"), "nobody")

    async def test_versions_are_separate(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "a1", version="1.0.0"), ttl=60)
        await registry.register(svc("greeter", "b1", "b2", version="2.0.0"), ttl=60)
        found = {s.version: node_ids(s) for s in await registry.get_service("greeter")}
        assert found == {"1.0.0": {"a1"}, "2.0.0": {"b1", "b2"}}

    async def test_list_services_sorted_by_name_then_version(self, registry: Registry) -> None:
        assert await registry.list_services() == []
        await registry.register(svc("zeta", "z1"), ttl=60)
        await registry.register(svc("alpha", "a2", version="2"), ttl=60)
        await registry.register(svc("alpha", "a1", version="1"), ttl=None)
        listed = [(s.name, s.version, node_ids(s)) for s in await registry.list_services()]
        assert listed == [("alpha", "1", {"a1"}), ("alpha", "2", {"a2"}), ("zeta", "1.0.0", {"z1"})]
        assert all(s.endpoints for s in await registry.list_services())

    async def test_nodes_accumulate_and_deregister_one_by_one(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "n1"), ttl=60)
        await registry.register(svc("greeter", "n2"), ttl=60)
        assert node_ids((await registry.get_service("greeter"))[0]) == {"n1", "n2"}
        await registry.deregister(svc("greeter", "n1"))
        assert node_ids((await registry.get_service("greeter"))[0]) == {"n2"}
        await registry.deregister(svc("greeter", "n2"))
        await fails("not_found", registry.get_service("greeter"))
        assert await registry.list_services() == []

    async def test_reregister_replaces_the_description(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "n1", stage="old"), ttl=60)
        await registry.register(svc("greeter", "n1", stage="new"), ttl=60)
        [found] = await registry.get_service("greeter")
        assert found.metadata == {"stage": "new"}
        assert node_ids(found) == {"n1"}

    async def test_deregister_unknown_is_a_no_op(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "n1"), ttl=60)
        await registry.deregister(svc("nobody", "x"))
        await registry.deregister(svc("greeter", "other-node"))
        await registry.deregister(svc("greeter", "n1", version="9.9"))
        assert node_ids((await registry.get_service("greeter"))[0]) == {"n1"}

    async def test_bad_input_is_refused_and_loses_nothing(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "n1"), ttl=60)
        await fails("bad_request", registry.register(svc("", "x"), ttl=60), "name")
        await fails("bad_request", registry.register(svc("greeter", "n2"), ttl=0), "ttl")
        await fails("bad_request", registry.register(svc("greeter", "n2"), ttl=-1), "ttl")
        [found] = await registry.get_service("greeter")
        assert node_ids(found) == {"n1"}

    async def test_names_with_slashes_and_spaces(self, registry: Registry) -> None:
        info = svc("team/greeter one", "node/1", version="v 1/2")
        await registry.register(info, ttl=60)
        assert await registry.get_service("team/greeter one") == [info]
        await fails("not_found", registry.get_service("team"))

    async def test_a_node_expires_after_its_ttl(self, registry: Registry, expire: Expire) -> None:
        await registry.register(svc("mortal", "m1"), ttl=self.TTL)
        await registry.register(svc("forever", "f1"), ttl=None)
        async with watching(registry, "mortal") as watch:
            await expire(self.TTL + 0.5)

            async def gone() -> bool:
                try:
                    await registry.get_service("mortal")
                except MicroError as err:
                    return err.code == "not_found"
                return False

            await eventually(gone, message="mortal expired")
            [event] = await watch.wait(1)
            assert (event.type, event.service.name, event.service.nodes) == ("delete", "mortal", [])
        assert node_ids((await registry.get_service("forever"))[0]) == {"f1"}

    async def test_heartbeats_keep_a_node_alive(self, registry: Registry, expire: Expire) -> None:
        await registry.register(svc("steady", "s1"), ttl=self.TTL)
        await expire(self.TTL * 0.6)
        await registry.register(svc("steady", "s1"), ttl=self.TTL)
        await expire(self.TTL * 0.6)
        assert node_ids((await registry.get_service("steady"))[0]) == {"s1"}

    async def test_watch_create_update_delete(self, registry: Registry) -> None:
        async with watching(registry, "greeter") as watch:
            await registry.register(svc("greeter", "n1"), ttl=60)
            await registry.register(svc("greeter", "n2"), ttl=60)
            await registry.register(svc("greeter", "n1"), ttl=60)  # heartbeat: no change
            await registry.deregister(svc("greeter", "n1"))
            await registry.deregister(svc("greeter", "n2"))
            events = await watch.wait(4)
            seen = [(e.type, node_ids(e.service)) for e in events]
            assert seen == [
                ("create", {"n1"}),
                ("update", {"n1", "n2"}),
                ("update", {"n2"}),
                ("delete", set()),
            ]
            assert all(e.service.endpoints for e in events)

    async def test_watch_reports_a_changed_description(self, registry: Registry) -> None:
        await registry.register(svc("greeter", "n1", stage="old"), ttl=60)
        async with watching(registry, "greeter") as watch:
            await registry.register(svc("greeter", "n1", stage="new"), ttl=60)
            [event] = await watch.wait(1)
            assert (event.type, event.service.metadata) == ("update", {"stage": "new"})

    async def test_watch_one_service_or_all(self, registry: Registry) -> None:
        async with watching(registry, "greeter") as one, watching(registry) as every:
            await registry.register(svc("other", "o1"), ttl=60)
            await registry.register(svc("greeter", "n1"), ttl=60)
            await every.wait(2)
            await one.wait(1)
            assert [e.service.name for e in every.events] == ["other", "greeter"]
            assert [e.service.name for e in one.events] == ["greeter"]
