"""The etcd registry's watcher: a snapshot of the prefix, then an etcd watch from the
snapshot's revision, turned into create/update/delete events like :class:`MemoryRegistry`.

After any failure (etcd restarted or unreachable, history compacted) it reconnects with
backoff (0.1 s doubling to 2 s), reads the prefix again and emits the difference from what
it knew, so its view converges even across a wiped etcd; changes that came and went while
it was disconnected are not replayed one by one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import msgspec

from ..errors import MicroError, bad_request
from . import Event, Node, ServiceInfo
from ._etcd_conn import EtcdConnection

__all__ = ["EtcdWatcher", "decode_key"]

log = logging.getLogger("micro.registry")

_WATCH_BUFFER = 10_000
_DECODER = msgspec.json.Decoder(ServiceInfo)


def decode_key(prefix: str, key: bytes) -> tuple[str, str, str] | None:
    """``(service, version, node id)`` of a registry key, None for a foreign key."""
    parts = key.decode().removeprefix(prefix).split("/")
    if len(parts) != 3:
        return None
    name, version, node = (unquote(p) for p in parts)
    return name, version, node


def decode_value(value: bytes) -> tuple[ServiceInfo, Node] | None:
    """The bare service and its one node stored under a key (None if malformed)."""
    try:
        info = _DECODER.decode(value)
    except msgspec.DecodeError:
        return None
    if len(info.nodes) != 1:
        return None
    return msgspec.structs.replace(info, nodes=[]), info.nodes[0]


@dataclass
class _Group:
    info: ServiceInfo
    nodes: dict[str, Node] = field(default_factory=dict)


class EtcdWatcher:
    """One watch. Its task starts at once; the registry's writes wait for :attr:`ready`, so
    every change made through the same registry after ``watch()`` is seen. It survives
    etcd restarts: it resumes from the last revision it saw."""

    def __init__(self, conn: EtcdConnection, key: str, prefix: str,
                 on_close: Callable[[EtcdWatcher], None]) -> None:
        self._conn = conn
        self._key = key.encode()
        self._prefix = prefix
        self._on_close = on_close
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_WATCH_BUFFER)
        self.ready = asyncio.Event()
        self._error: MicroError | None = None
        self._groups: dict[tuple[str, str], _Group] = {}
        self._keys: dict[bytes, bytes] = {}
        self._revision = 0
        self._silent = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __aiter__(self) -> EtcdWatcher:
        return self

    async def __anext__(self) -> Event:
        if self._error is not None and self.queue.empty():
            await self.aclose()
            raise self._error
        return await self.queue.get()

    async def aclose(self) -> None:
        """Stop watching."""
        self.ready.set()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._on_close(self)

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            client = None
            try:
                client = await self._conn.client()
                await self._snapshot(client)
                self.ready.set()
                await self._follow(client)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("registry watch: etcd unreachable (%r); retrying", exc)
                self.ready.set()
                await self._conn.drop(client)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _snapshot(self, client: Any) -> None:
        """Read the prefix. The first read is the starting point; a later one (after a
        reconnect, a compaction, a wiped etcd) emits the difference as events."""
        resp = await self._conn.call_raw(lambda: client.get_prefix(self._key))
        seen: dict[bytes, bytes] = {bytes(kv.key): bytes(kv.value) for kv in resp.kvs}
        self._silent = not self._revision  # the first read is the state "now": no events
        for key in [k for k in self._keys if k not in seen]:
            self._delete(key)
        for key, value in seen.items():
            self._put(key, value)
        self._silent = False
        self._revision = resp.header.revision

    async def _follow(self, client: Any) -> None:
        watch = await self._conn.call_raw(
            lambda: client.watch_prefix(self._key, start_revision=self._revision + 1)
        )
        async for event in watch:
            key, value = bytes(event.kv.key), bytes(event.kv.value)
            if event.kind == "PUT":
                self._put(key, value)
            else:
                self._delete(key)
            self._revision = max(self._revision, event.kv.mod_revision)
        raise ConnectionError("etcd watch stream ended")

    # -- translation ---------------------------------------------------------------------------

    def _put(self, key: bytes, value: bytes) -> None:
        where = decode_key(self._prefix, key)
        decoded = decode_value(value)
        if where is None or decoded is None or self._keys.get(key) == value:
            return
        self._keys[key] = value
        name, version, node_id = where
        info, node = decoded
        group = self._groups.get((name, version))
        if group is None:
            group = self._groups[(name, version)] = _Group(info, {node_id: node})
            self._emit("create", group)
            return
        changed = info != group.info or group.nodes.get(node_id) != node
        group.info = info
        group.nodes[node_id] = node
        if changed:
            self._emit("update", group)

    def _delete(self, key: bytes) -> None:
        where = decode_key(self._prefix, key)
        if where is None or self._keys.pop(key, None) is None:
            return
        name, version, node_id = where
        group = self._groups.get((name, version))
        if group is None or group.nodes.pop(node_id, None) is None:
            return
        if group.nodes:
            self._emit("update", group)
            return
        del self._groups[(name, version)]
        self._emit("delete", group)

    def _emit(self, kind: str, group: _Group) -> None:
        if self._silent:
            return
        service = msgspec.structs.replace(group.info, nodes=list(group.nodes.values()))
        try:
            self.queue.put_nowait(Event(kind, service))  # type: ignore[arg-type]
        except asyncio.QueueFull:
            self._error = bad_request("registry", "watcher fell too far behind; watch again")
            self._task.cancel()
