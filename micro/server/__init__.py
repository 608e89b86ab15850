"""``micro server``: hosts the core services on one RPC listener, plus the HTTP gateway.

::

    :8081  RPC ── registry  (Registry.*)   backend: MemoryRegistry + reaper
               ├─ broker    (Broker.*)     backend: MemoryBroker
               ├─ store     (Store.*)      backend: SqliteStore (data_dir/store.db)
               ├─ config    (Config.*)     backend: SqliteConfig (data_dir/config.db)
               ├─ events    (Events.*)     backend: SqliteEvents (data_dir/events.db)
               ├─ sync      (Sync.*)       backend: SqliteSync (data_dir/sync.db)
               ├─ monitor   (Monitor.*)    probes every node, runs checks, raises alerts
               └─ runtime   (Runtime.*)    backend: LocalRuntime (supervised processes)
    :8080  HTTP gateway ──> any registered service

Each core service is an ordinary :class:`~micro.Service` sharing the listener, registered in
the registry like any other, so ``micro services`` lists them too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..broker.handler import BrokerHandler
from ..client import Client
from ..config.handler import ConfigHandler
from ..events.handler import EventsHandler
from ..gateway import Gateway
from ..monitor.handler import MonitorHandler
from ..monitor.monitor import Monitor
from ..registry.handler import RegistryHandler
from ..registry.memory import MemoryRegistry
from ..service import Service
from ..service.process import serve_until_signal
from ..settings import Settings
from ..store.handler import StoreHandler
from ..sync.handler import SyncHandler
from ..transport.client import split_address
from ..transport.server import Router, RpcServer
from .backends import open_backends

__all__ = ["MicroServer", "ServerOptions"]

log = logging.getLogger("micro.server")


@dataclass(frozen=True)
class ServerOptions:
    """Where the server listens and keeps state."""

    address: str = "127.0.0.1:8081"
    gateway: str | None = "127.0.0.1:8080"  # None: no gateway
    data_dir: Path = field(default_factory=lambda: Settings.from_env().data_dir)
    runtime: bool = True  # supervise services started with `micro run`
    reap_interval: float = 1.0
    profile: str = field(default_factory=lambda: Settings.from_env().profile)  # local|cluster


class MicroServer:
    """The core runtime in one process."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        self.backends = open_backends(self.options.profile, self.options.data_dir)
        self.registry = self.backends.registry
        self.broker = self.backends.broker
        self.store = self.backends.store
        self.config = self.backends.config
        self.events = self.backends.events
        self.sync = self.backends.sync
        self.monitor: Monitor | None = None
        self.router = Router()
        self.rpc = RpcServer(self.router)
        self.client = Client(self.registry)
        self.gateway: Gateway | None = None
        self.runtime: Any = None
        self.services: list[Service] = []
        self._reaper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """The RPC ``host:port`` (after :meth:`start`)."""
        return self.rpc.address

    def _core(self, name: str, handler: object, handler_name: str) -> Service:
        settings = Settings(server=self.rpc.address, data_dir=self.options.data_dir)
        svc = Service(
            name, registry=self.registry, client=self.client, settings=settings, register_ttl=60.0
        )
        svc.handler(handler, name=handler_name)
        return svc

    async def start(self) -> None:
        """Listen, start the core services and the gateway, bring back supervised services."""
        host, port = split_address(self.options.address)
        await self.rpc.start(host, port)
        await self.backends.start()
        if isinstance(self.registry, MemoryRegistry):  # etcd expires nodes by itself
            self._reaper = asyncio.get_running_loop().create_task(
                self.registry.run_reaper(self.options.reap_interval)
            )
        for name, handler in (
            ("registry", RegistryHandler(self.registry)),
            ("broker", BrokerHandler(self.broker)),
            ("store", StoreHandler(self.store)),
            ("config", ConfigHandler(self.config)),
            ("events", EventsHandler(self.events)),
            ("sync", SyncHandler(self.sync)),
        ):
            self.services.append(self._core(name, handler, name.capitalize()))
        self.monitor = Monitor(self.registry, self.client, self.events, self.store)
        self.services.append(self._core("monitor", MonitorHandler(self.monitor), "Monitor"))
        if self.options.runtime:
            from ..runtime.handler import RuntimeHandler
            from ..runtime.local import LocalRuntime

            self.runtime = LocalRuntime(
                self.options.data_dir,
                server=self.rpc.address,
                registry=self.registry,
                events=self.events,
                config=self.config,
            )
            self.services.append(self._core("runtime", RuntimeHandler(self.runtime), "Runtime"))
        if self.options.gateway is not None:
            self.gateway = Gateway(self.client, self.options.gateway)
            # the gateway's spans and stats, served like any service's (micro trace, stats)
            self.services.append(self._core("gateway", self.gateway.debug.handler, "Debug"))
        for svc in self.services:
            await svc.start(server=self.rpc)
        await self.monitor.start()
        if self.gateway is not None:
            await self.gateway.start()
        if self.runtime is not None:
            await self.runtime.start()
        log.info(
            "micro server: RPC on %s, gateway on %s, data in %s",
            self.rpc.address,
            self.gateway.address if self.gateway else "-",
            self.options.data_dir,
        )

    async def stop(self) -> None:
        """Stop supervised services (their desired state is kept), the gateway and the core."""
        if self.monitor is not None:
            await self.monitor.close()
        if self.runtime is not None:
            await self.runtime.close()
        if self.gateway is not None:
            await self.gateway.stop()
        await self.broker.close()  # ends open Subscribe streams now, not after the grace
        self.backends.end_streams()  # likewise for election Observe streams
        self.rpc.draining = True
        for svc in reversed(self.services):
            await svc.stop()
        self.services.clear()
        await self.rpc.stop(grace=5.0)
        await self.backends.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.client.close()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        await serve_until_signal(self.start, self.stop, "micro server")

    async def __aenter__(self) -> MicroServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
