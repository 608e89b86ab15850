"""The monitor wired into a real ``micro server`` the way the server is meant to host it."""

from __future__ import annotations

import json

from micro import Service
from micro.events import Events
from micro.monitor import ALERT_TOPIC, Check, Target
from micro.monitor.handler import MonitorHandler
from micro.monitor.monitor import Monitor
from micro.monitor.rpc import RpcMonitor
from micro.registry import Node, ServiceInfo
from micro.server import MicroServer
from micro.settings import Settings
from micro.store import Store
from micro.testing import eventually


async def test_hosted_on_the_server_with_its_registry_client_events_and_store(
    micro_server: MicroServer,
) -> None:
    server = micro_server
    assert server.events is not None and server.store is not None
    events: Events = server.events
    store: Store = server.store
    monitor = Monitor(server.registry, server.client, events, store, interval=0.1)
    settings = Settings(server=server.rpc.address, data_dir=server.options.data_dir)
    svc = Service(
        "monitor",
        registry=server.registry,
        client=server.client,
        settings=settings,
        register_ttl=60.0,
    )
    svc.handler(MonitorHandler(monitor), name="Monitor")
    await svc.start(server=server.rpc)
    await monitor.start()
    rpc = RpcMonitor(server.address)
    try:
        dead = ServiceInfo("ghost", nodes=[Node("ghost-1", "127.0.0.1:1")])
        await server.registry.register(dead, ttl=60)
        await rpc.add(
            Check("registry", "rpc", Target("registry", "Registry.ListServices"), interval=0.1)
        )

        async def settled() -> bool:
            states = {n.service: n.state for n in await rpc.health()}
            return states.get("ghost") == "down" and states.get("monitor") == "up"

        await eventually(settled, timeout=5, message="ghost down, core up")
        assert not [s for s in await server.registry.list_services() if s.name == "ghost"]

        async def alerted() -> bool:  # the alert is published after the state changes
            alerts = [json.loads(e.body) for e in await events.read(ALERT_TOPIC)]
            return [(a["type"], a["node"]) for a in alerts] == [("node_down", "ghost-1")]

        await eventually(alerted, timeout=5, message="one node_down alert for ghost-1")

        async def checked() -> bool:
            (status,) = await rpc.checks()
            return status.last is not None

        await eventually(checked, timeout=5, message="check ran")
        (status,) = await rpc.checks()
        assert status.last is not None and status.last.ok
        assert await store.list_keys("micro", "monitor", prefix="check/") == ["check/registry"]
    finally:
        await rpc.close()
        await monitor.close()
        await svc.stop(grace=0.5)
