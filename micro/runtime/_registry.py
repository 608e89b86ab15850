"""What a rolling update asks the registry: is a process registered; take it out."""

from __future__ import annotations

import logging

from ..errors import MicroError
from ..registry import Node, Registry, ServiceInfo

__all__ = ["is_registered", "take_out"]

log = logging.getLogger("micro.runtime")


async def _versions(registry: Registry, name: str) -> list[ServiceInfo]:
    try:
        return await registry.get_service(name)
    except MicroError as exc:
        if exc.code != "not_found":
            log.warning("runtime: cannot read %s from the registry: %s", name, exc)
        return []


def _nodes_of(service: ServiceInfo, pid: int) -> list[Node]:
    """The nodes a micro Service in process ``pid`` registered (metadata ``pid``)."""
    return [node for node in service.nodes if node.metadata.get("pid") == str(pid)]


async def is_registered(registry: Registry, name: str, pid: int) -> bool:
    """True when process ``pid`` has a node of service ``name`` in the registry."""
    return any(_nodes_of(svc, pid) for svc in await _versions(registry, name))


async def take_out(registry: Registry, name: str, pid: int) -> bool:
    """Deregister the nodes of service ``name`` that process ``pid`` registered; True when
    there were some."""
    removed = False
    for svc in await _versions(registry, name):
        nodes = _nodes_of(svc, pid)
        if not nodes:
            continue
        try:
            await registry.deregister(ServiceInfo(svc.name, svc.version, nodes=nodes))
        except MicroError as exc:
            log.warning("runtime: cannot deregister %s (pid %d): %s", name, pid, exc)
            continue
        removed = True
    return removed
