"""The registry on etcd (v3 API, via ``aetcd``): for several ``micro server`` replicas.

Layout: one key per node, ``<prefix><service>/<version>/<node id>`` (each part
percent-encoded), holding the :class:`ServiceInfo` with just that node (msgspec JSON).
``register(..., ttl)`` attaches the keys to an etcd lease of ``ceil(ttl)`` seconds (etcd's
minimum, about 2 s with default settings, applies); heartbeating refreshes that lease, or
grants a new one when it is gone (after etcd lost it, or the TTL changed) and puts the key
again. ``ttl=None`` puts the key without a lease. Expiry is enforced by etcd in real time
(the injected clock of the memory backend has no equivalent here). ``deregister`` deletes
the keys and revokes their leases.

Reads are one range read of the prefix. ``watch()`` reads the prefix and then follows an
etcd watch from that revision, producing the same create/update/delete events as
:class:`~micro.registry.memory.MemoryRegistry`; the watch is subscribed when ``watch()`` is
called (writes through the same registry wait until the watch has its starting point), and
it resumes by itself after etcd restarts. Connection failures raise ``unavailable`` (or
``timeout``); the next call reconnects (to the next endpoint).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from ..errors import bad_request, not_found
from . import ServiceInfo
from ._etcd_conn import EtcdConnection, EtcdSettings
from ._etcd_watch import EtcdWatcher, decode_key, decode_value

__all__ = ["EtcdRegistry", "EtcdSettings"]

_ENCODER = msgspec.json.Encoder()
_MAX_LEASE = 9_000_000_000  # seconds: etcd's longest lease (a longer or infinite ttl gets it)


@dataclass
class _Lease:
    id: int
    ttl: int


def _part(text: str) -> str:
    return quote(text, safe="")


class EtcdRegistry:
    """A :class:`~micro.registry.Registry` kept in etcd at ``endpoints`` under ``prefix``.
    Connects lazily on the first call; :meth:`close` releases the connection and watchers."""

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        prefix: str = "/micro/registry/",
        timeout: float = 5.0,
    ) -> None:
        listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.settings = EtcdSettings(tuple(listed), prefix, timeout)
        self._conn = EtcdConnection(self.settings, "registry")
        self._leases: dict[str, _Lease] = {}
        self._watchers: set[EtcdWatcher] = set()

    def _key(self, name: str, version: str = "", node: str | None = None) -> str:
        key = self.settings.prefix + _part(name) + "/"
        if node is not None:
            key += _part(version) + "/" + _part(node)
        return key

    async def _watchers_ready(self) -> None:
        pending = [
            asyncio.ensure_future(w.ready.wait()) for w in self._watchers if not w.ready.is_set()
        ]
        if pending:  # a watcher that cannot start gives up waiting within the timeout anyway
            _, late = await asyncio.wait(pending, timeout=self.settings.timeout)
            for task in late:
                task.cancel()

    # -- writes --------------------------------------------------------------------------------

    async def register(self, service: ServiceInfo, ttl: float | None = None) -> None:
        """Put each node's key, on a refreshed (or new) lease of ``ttl`` seconds."""
        if not service.name:
            raise bad_request("registry", "service name is required")
        if ttl is not None and not ttl > 0:
            raise bad_request("registry", f"ttl must be positive, got {ttl}")
        await self._watchers_ready()
        bare = msgspec.structs.replace(service, nodes=[])
        for node in service.nodes:
            key = self._key(service.name, service.version, node.id)
            value = _ENCODER.encode(msgspec.structs.replace(bare, nodes=[node]))
            await self._put(key, value, ttl)

    async def _put(self, key: str, value: bytes, ttl: float | None) -> None:
        if ttl is None:
            self._leases.pop(key, None)
            await self._conn.call(lambda c: c.put(key.encode(), value))
            return
        seconds = _MAX_LEASE if ttl >= _MAX_LEASE else max(1, math.ceil(ttl))
        for _ in range(2):
            lease_id = (await self._lease(key, seconds)).id
            put = await self._conn.call(
                lambda c, lid=lease_id: c.put(key.encode(), value, lease=lid)  # type: ignore[misc]
            )
            if put is not None:  # aetcd answers None when etcd no longer knows the lease
                return
            self._leases.pop(key, None)

    async def _lease(self, key: str, seconds: int) -> _Lease:
        cached = self._leases.get(key)
        if cached is not None and cached.ttl == seconds:
            reply = await self._conn.call(lambda c: c.refresh_lease(cached.id))
            if reply is not None and reply.TTL > 0:
                return cached
        granted: Any = await self._conn.call(lambda c: c.lease(seconds))
        lease = self._leases[key] = _Lease(granted.id, seconds)
        return lease

    async def deregister(self, service: ServiceInfo) -> None:
        """Delete each node's key and revoke its lease."""
        await self._watchers_ready()
        for node in service.nodes:
            key = self._key(service.name, service.version, node.id)
            await self._remove(key)

    async def _remove(self, key: str) -> None:
        await self._conn.call(lambda c: c.delete(key.encode()))
        lease = self._leases.pop(key, None)
        if lease is not None:
            await self._conn.call(lambda c: c.revoke_lease(lease.id))

    # -- reads ---------------------------------------------------------------------------------

    async def _read(self, key: str) -> list[ServiceInfo]:
        resp = await self._conn.call(lambda c: c.get_prefix(key.encode()))
        groups: dict[tuple[str, str], tuple[int, ServiceInfo, list[Any]]] = {}
        for kv in resp.kvs:
            where = decode_key(self.settings.prefix, bytes(kv.key))
            decoded = decode_value(bytes(kv.value))
            if where is None or decoded is None:
                continue
            info, node = decoded
            group = (where[0], where[1])
            revision, latest, nodes = groups.get(group, (0, info, []))
            if kv.mod_revision >= revision:  # the latest registration describes the service
                revision, latest = kv.mod_revision, info
            nodes.append(node)
            groups[group] = (revision, latest, nodes)
        return [
            msgspec.structs.replace(groups[group][1], nodes=groups[group][2])
            for group in sorted(groups)
        ]

    async def get_service(self, name: str) -> list[ServiceInfo]:
        """Every live version of ``name``."""
        found = await self._read(self._key(name))
        if not found:
            raise not_found("registry", f"service {name!r} not found")
        return found

    async def list_services(self) -> list[ServiceInfo]:
        """Every live service version, sorted by name then version."""
        return await self._read(self.settings.prefix)

    # -- watch ---------------------------------------------------------------------------------

    def watch(self, service: str | None = None) -> EtcdWatcher:
        """Changes from now on (must be called with a running event loop)."""
        key = self.settings.prefix if service is None else self._key(service)
        watcher = EtcdWatcher(self._conn, key, self.settings.prefix, self._watchers.discard)
        self._watchers.add(watcher)
        return watcher

    async def close(self) -> None:
        """Stop the watchers and close the connection (leases are left to expire)."""
        for watcher in list(self._watchers):
            await watcher.aclose()
        await self._conn.close()
