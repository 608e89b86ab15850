"""The in-process registry: complete, deterministic, with an injectable clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import msgspec

from ..errors import bad_request, not_found
from . import Event, Node, ServiceInfo

__all__ = ["MemoryRegistry"]

log = logging.getLogger("micro.registry")

_WATCH_BUFFER = 10_000


@dataclass
class _Version:
    info: ServiceInfo  # name, version, metadata, endpoints (nodes kept below)
    nodes: dict[str, tuple[Node, float | None]] = field(default_factory=dict)


class _Watcher:
    """One watch: subscribed as soon as it is created, so no change is missed between
    ``watch()`` and the first ``__anext__``."""

    __slots__ = ("_registry", "overflowed", "queue", "service")

    def __init__(self, registry: MemoryRegistry, service: str | None) -> None:
        self._registry = registry
        self.service = service
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_WATCH_BUFFER)
        self.overflowed = False
        registry._watchers.add(self)

    def __aiter__(self) -> _Watcher:
        return self

    async def __anext__(self) -> Event:
        if self.overflowed and self.queue.empty():
            await self.aclose()
            raise bad_request("registry", "watcher fell too far behind; watch again")
        return await self.queue.get()

    async def aclose(self) -> None:
        """Stop watching."""
        self._registry._watchers.discard(self)


class MemoryRegistry:
    """Services held in memory. Expired nodes are never returned; :meth:`reap` removes them
    and tells watchers (the server calls it every second; tests call it after moving the
    clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._services: dict[str, dict[str, _Version]] = {}
        self._watchers: set[_Watcher] = set()

    # -- writes --------------------------------------------------------------------------------

    async def register(self, service: ServiceInfo, ttl: float | None = None) -> None:
        """Add or refresh ``service``'s nodes."""
        if not service.name:
            raise bad_request("registry", "service name is required")
        if ttl is not None and ttl <= 0:
            raise bad_request("registry", f"ttl must be positive, got {ttl}")
        expires = None if ttl is None else self._clock() + ttl
        versions = self._services.setdefault(service.name, {})
        current = versions.get(service.version)
        bare = msgspec.structs.replace(service, nodes=[])
        if current is None:
            current = versions[service.version] = _Version(bare)
            kind = "create"
        else:
            kind = "update" if (bare != current.info or self._adds_node(current, service)) else ""
            current.info = bare
        for node in service.nodes:
            current.nodes[node.id] = (node, expires)
        if kind:
            self._notify(kind, current)

    @staticmethod
    def _adds_node(current: _Version, service: ServiceInfo) -> bool:
        return any(
            node.id not in current.nodes or current.nodes[node.id][0] != node
            for node in service.nodes
        )

    async def deregister(self, service: ServiceInfo) -> None:
        """Remove ``service``'s nodes; the version goes with its last node."""
        versions = self._services.get(service.name)
        if versions is None:
            return
        current = versions.get(service.version)
        if current is None:
            return
        removed = [current.nodes.pop(node.id, None) for node in service.nodes]
        if not any(removed):
            return
        self._settle(service.name, service.version, current)

    def _settle(self, name: str, version: str, current: _Version) -> None:
        if current.nodes:
            self._notify("update", current)
            return
        versions = self._services[name]
        del versions[version]
        if not versions:
            del self._services[name]
        self._notify("delete", current)

    def reap(self) -> int:
        """Drop expired nodes; return how many went."""
        now = self._clock()
        dropped = 0
        for name, versions in list(self._services.items()):
            for version, current in list(versions.items()):
                dead = [
                    nid for nid, (_, exp) in current.nodes.items() if exp is not None and exp <= now
                ]
                if not dead:
                    continue
                for nid in dead:
                    del current.nodes[nid]
                dropped += len(dead)
                log.info("registry: %s %s lost %d expired node(s)", name, version, len(dead))
                self._settle(name, version, current)
        return dropped

    async def run_reaper(self, interval: float = 1.0) -> None:
        """Reap forever, every ``interval`` seconds (run it as a task)."""
        while True:
            await asyncio.sleep(interval)
            self.reap()

    # -- reads ---------------------------------------------------------------------------------

    def _live(self, current: _Version) -> ServiceInfo | None:
        now = self._clock()
        nodes = [n for n, exp in current.nodes.values() if exp is None or exp > now]
        if not nodes:
            return None
        return msgspec.structs.replace(current.info, nodes=nodes)

    async def get_service(self, name: str) -> list[ServiceInfo]:
        """Every live version of ``name``."""
        found = [
            info
            for current in self._services.get(name, {}).values()
            if (info := self._live(current)) is not None
        ]
        if not found:
            raise not_found("registry", f"service {name!r} not found")
        return found

    async def list_services(self) -> list[ServiceInfo]:
        """Every live service version, sorted by name then version."""
        found = [
            info
            for name in sorted(self._services)
            for _, current in sorted(self._services[name].items())
            if (info := self._live(current)) is not None
        ]
        return found

    # -- watch ---------------------------------------------------------------------------------

    def _notify(self, kind: str, current: _Version) -> None:
        service = msgspec.structs.replace(
            current.info, nodes=[n for n, _ in current.nodes.values()]
        )
        event = Event(kind, service)  # type: ignore[arg-type]
        for watcher in list(self._watchers):
            if watcher.service is not None and watcher.service != service.name:
                continue
            try:
                watcher.queue.put_nowait(event)
            except asyncio.QueueFull:
                watcher.overflowed = True
                self._watchers.discard(watcher)

    def watch(self, service: str | None = None) -> AsyncIterator[Event]:
        """Changes from now on. A watcher that falls over 10,000 events behind is ended with
        an error, so it can start again from a fresh read instead of missing changes."""
        return _Watcher(self, service)

    async def close(self) -> None:
        """Nothing to release."""
