"""A cached view of the registry, kept fresh by a watch, so calls rarely ask the registry."""

from __future__ import annotations

import asyncio
import logging
import random

from ..registry import EndpointInfo, Event, Node, Registry, ServiceInfo

__all__ = ["RegistryView"]

log = logging.getLogger("micro.client")


class RegistryView:
    """Nodes and endpoint metadata per service, loaded on first use and then updated from
    the registry's watch stream. If the watch breaks, the cache is dropped (so the next call
    reads afresh) and the watch is restarted with backoff."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._services: dict[str, dict[str, ServiceInfo]] = {}
        self._nodes: dict[str, list[Node]] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._closed = False

    def nodes(self, service: str) -> list[Node] | None:
        """Cached nodes of ``service``, or ``None`` when not loaded."""
        return self._nodes.get(service)

    async def load(self, service: str) -> list[Node]:
        """Read ``service`` from the registry (raises ``not_found``) and cache it."""
        self._ensure_watch()
        versions = await self.registry.get_service(service)
        self._services[service] = {svc.version: svc for svc in versions}
        self._refresh(service)
        return self._nodes[service]

    def endpoint(self, service: str, endpoint: str) -> EndpointInfo | None:
        """Endpoint metadata from any cached version of ``service``."""
        for svc in self._services.get(service, {}).values():
            info = svc.endpoint(endpoint)
            if info is not None:
                return info
        return None

    def evict(self, service: str, address: str) -> None:
        """Forget a node that refused connections (the registry will expire it too)."""
        nodes = self._nodes.get(service)
        if nodes is not None:
            self._nodes[service] = [n for n in nodes if n.address != address]

    def forget(self, service: str) -> None:
        """Drop ``service`` from the cache."""
        self._services.pop(service, None)
        self._nodes.pop(service, None)

    def _refresh(self, service: str) -> None:
        self._nodes[service] = [
            n for svc in self._services.get(service, {}).values() for n in svc.nodes
        ]

    def apply(self, event: Event) -> None:
        """Fold one watch event into the cache (only for services already cached)."""
        svc = event.service
        versions = self._services.get(svc.name)
        if versions is None:
            return
        if event.type == "delete":
            versions.pop(svc.version, None)
        else:
            versions[svc.version] = svc
        self._refresh(svc.name)

    def _ensure_watch(self) -> None:
        if self._watch_task is None and not self._closed:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                async for event in self.registry.watch():
                    delay = 0.1
                    self.apply(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("registry watch broke (%s); retrying", exc)
            # The stream ended or broke: changes may have been missed, so read afresh.
            self._services.clear()
            self._nodes.clear()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        """Stop watching."""
        self._closed = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
            self._watch_task = None
