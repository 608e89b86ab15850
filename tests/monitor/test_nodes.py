"""Node health: deterministic state changes with a fake prober, then real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from micro import MicroError
from micro.events.memory import MemoryEvents
from micro.monitor import ALERT_TOPIC
from micro.monitor.monitor import Monitor
from micro.registry import Node, ServiceInfo
from micro.registry.memory import MemoryRegistry
from micro.server import MicroServer
from micro.testing import eventually
from micro.testing.conformance.clock import FakeClock
from tests.noauth import micro_server  # noqa: F401 (auth off: not what these test)

from .support import target_service


class FakeProber:
    """Answers from a set of live addresses, counting probes."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.probes: list[str] = []

    async def __call__(self, address: str, timeout: float) -> float:
        self.probes.append(address)
        if address not in self.live:
            raise ConnectionRefusedError(f"{address} refused")
        return 0.001


def info(node: str, address: str, name: str = "api") -> ServiceInfo:
    return ServiceInfo(name, "v1", {"team": "x"}, nodes=[Node(node, address, {"zone": "a"})])


async def node_ids(registry: MemoryRegistry, name: str = "api") -> set[str]:
    try:
        return {n.id for s in await registry.get_service(name) for n in s.nodes}
    except MicroError:
        return set()


async def alerts(events: MemoryEvents) -> list[dict[str, object]]:
    try:
        return [json.loads(e.body) for e in await events.read(ALERT_TOPIC)]
    except MicroError:
        return []


async def test_a_node_is_removed_after_n_failures_and_readmitted_when_it_answers() -> None:
    clock, prober, registry, events = FakeClock(), FakeProber(), MemoryRegistry(), MemoryEvents()
    monitor = Monitor(registry, events=events, interval=1.0, clock=clock, prober=prober)
    await registry.register(info("n1", "10.0.0.1:1"), ttl=60)
    await registry.register(info("n2", "10.0.0.2:1"), ttl=60)
    prober.live = {"10.0.0.1:1"}
    for _ in range(2):
        await monitor.tick()
        clock.advance(1.0)
    assert await node_ids(registry) == {"n1", "n2"}  # two failures: still registered
    await monitor.tick()  # the third
    assert await node_ids(registry) == {"n1"}
    states = {h.node: (h.state, h.failures) for h in monitor.health()}
    assert states == {"n1": ("up", 0), "n2": ("down", 3)}
    down = await alerts(events)
    assert [(a["type"], a["node"], a["address"]) for a in down] == [
        ("node_down", "n2", "10.0.0.2:1")
    ]
    clock.advance(0.5)
    await monitor.tick()  # not due yet: no probe round
    assert len(prober.probes) == 6

    prober.live.add("10.0.0.2:1")
    clock.advance(0.5)
    await monitor.tick()
    (back,) = await registry.get_service("api")
    assert {n.id: n.metadata for n in back.nodes} == {"n1": {"zone": "a"}, "n2": {"zone": "a"}}
    assert back.metadata == {"team": "x"}
    assert [a["type"] for a in await alerts(events)] == ["node_down", "node_up"]
    assert all(h.state == "up" for h in monitor.health())


async def test_a_node_that_leaves_is_forgotten_and_a_down_node_after_forget_after() -> None:
    clock, prober, registry = FakeClock(), FakeProber(), MemoryRegistry()
    monitor = Monitor(
        registry, interval=1.0, failures=1, forget_after=10, clock=clock, prober=prober
    )
    await registry.register(info("n1", "10.0.0.1:1"))
    await registry.register(info("n2", "10.0.0.2:1"))
    prober.live = {"10.0.0.1:1"}
    await monitor.tick()
    assert [(h.node, h.state) for h in monitor.health()] == [("n1", "up"), ("n2", "down")]
    await registry.deregister(info("n1", "10.0.0.1:1"))
    clock.advance(5)
    await monitor.tick()
    assert [h.node for h in monitor.health()] == ["n2"]  # still probed while down
    clock.advance(6)
    await monitor.tick()
    assert monitor.health() == []


async def test_a_down_node_that_registers_itself_again_is_marked_up() -> None:
    clock, prober, registry = FakeClock(), FakeProber(), MemoryRegistry()
    monitor = Monitor(registry, interval=1.0, failures=1, clock=clock, prober=prober)
    await registry.register(info("n1", "10.0.0.1:1"))
    await monitor.tick()
    assert await node_ids(registry) == set()
    await registry.register(info("n1", "10.0.0.1:1"))  # its own heartbeat
    prober.live = {"10.0.0.1:1"}
    clock.advance(1)
    await monitor.tick()
    assert [(h.node, h.state) for h in monitor.health()] == [("n1", "up")]
    assert await node_ids(registry) == {"n1"}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Monitor(MemoryRegistry(), interval=0)
    with pytest.raises(ValueError):
        Monitor(MemoryRegistry(), failures=0)
    with pytest.raises(ValueError):
        Monitor(MemoryRegistry(), history=0)


VICTIM = textwrap.dedent(
    """
    import msgspec
    from micro import Context, Service

    class Req(msgspec.Struct):
        pass

    service = Service("victim")

    @service.handler
    class Victim:
        async def call(self, ctx: Context, req: Req) -> Req:
            return req

    service.run()
    """
)


async def test_a_node_killed_with_sigkill_is_deregistered_within_the_window(
    micro_server: MicroServer, tmp_path: Path
) -> None:
    events = MemoryEvents()
    monitor = Monitor(micro_server.registry, micro_server.client, events, interval=0.2)
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={"MICRO_SERVER": micro_server.address, "MICRO_AUTH": "off", "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await monitor.start()
    try:

        async def registered() -> bool:
            return bool(await node_ids(micro_server.registry, "victim"))

        await eventually(registered, message="victim registered")

        def victim_up() -> bool:
            return any(h.service == "victim" and h.state == "up" for h in monitor.health())

        await eventually(victim_up, timeout=5, message="victim probed")
        loop = asyncio.get_running_loop()
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        killed = loop.time()

        async def gone() -> bool:
            return not await registered()

        await eventually(gone, timeout=5, interval=0.01, message="victim deregistered")
        # 3 failed rounds 0.2 s apart: well inside the 15 s TTL the registry would wait
        assert loop.time() - killed < 2.0

        async def alerted() -> bool:  # the alert follows the deregistration
            found = await alerts(events)
            return [(a["type"], a["service"]) for a in found] == [("node_down", "victim")]

        await eventually(alerted, timeout=5, message="one node_down alert")
        (state,) = [h for h in monitor.health() if h.service == "victim"]
        assert state.state == "down" and state.failures >= 3 and state.error
    finally:
        await monitor.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await events.close()


async def test_a_node_that_comes_back_on_its_port_is_readmitted() -> None:
    registry, events = MemoryRegistry(), MemoryEvents()
    monitor = Monitor(registry, events=events, interval=0.1, failures=2)
    fake = target_service()  # registers in its own registry, not the monitored one
    await fake.start()
    address = fake.address
    entry = msgspec.structs.replace(fake.info(), nodes=[Node("fake-1", address)])
    await registry.register(entry, ttl=15)
    await monitor.start()
    try:
        await eventually(lambda: len(monitor.health()) == 1, timeout=5, message="probed")
        await fake.stop(grace=0.5)

        async def removed() -> bool:
            return await node_ids(registry, "target") == set()

        await eventually(removed, timeout=5, interval=0.01, message="removed")
        assert [h.state for h in monitor.health()] == ["down"]

        again = target_service(address=address)
        await again.start()
        try:

            async def back() -> bool:
                return await node_ids(registry, "target") == {"fake-1"}

            await eventually(back, timeout=5, message="re-admitted")
            (svc,) = await registry.get_service("target")
            assert svc.endpoint("Target.Status") is not None  # the info it had

            async def alerted() -> bool:  # alerts follow the registry changes
                return [a["type"] for a in await alerts(events)] == ["node_down", "node_up"]

            await eventually(alerted, timeout=5, message="node_down then node_up")
        finally:
            await again.stop(grace=0.5)
    finally:
        await monitor.close()
        await events.close()
