"""Sync locks on etcd (v3 API, via ``aetcd``) — a partial backend: locks only.

:class:`EtcdLocks` provides ``acquire`` / ``renew`` / ``release`` of
:class:`~micro.sync.Sync` (no elections, maps or queues). A lock is the key
``<prefix>locks/<name>`` (name percent-encoded) holding the owner, attached to an etcd lease
of ``ceil(ttl)`` seconds (etcd's minimum, about 2 s with default settings, applies); etcd
deletes it when the lease runs out, in real time on etcd's clock.

**Fencing token** = the key's *create revision*: the etcd revision at which this
acquisition created the key. etcd revisions only grow (across restarts too, the data dir
keeps them), so every acquisition of a name gets a token greater than every earlier one —
but tokens are not consecutive (1, 2, 3, ...) as in the memory and SQLite backends, and are
shared by all keys of the cluster. ``renew`` and ``release`` act only while the key still
has that create revision (one etcd transaction), else ``conflict``: the lease was lost.
``renew`` moves the key to a new lease of the new TTL and revokes the old one.

``Lease.expires`` is ``clock() + ttl`` at the time of the call (the injected clock): etcd,
not this clock, decides the actual expiry. ``acquire(..., wait=s)`` re-checks every
:data:`~micro.sync.POLL_INTERVAL` * 2 seconds until ``s`` seconds (real time) passed.
Connection failures raise ``unavailable`` (or ``timeout``); the next call reconnects.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ..errors import MicroError, bad_request, conflict
from ..registry._etcd_conn import EtcdConnection, EtcdSettings
from . import ID, MAX_NAME, MAX_WAIT, POLL_INTERVAL, Lease

__all__ = ["EtcdLocks", "EtcdSettings"]


def _check_ttl(ttl: float) -> None:
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise bad_request(ID, f"ttl must be a positive number of seconds, got {ttl!r}")


class EtcdLocks:
    """Locks with fencing tokens kept in etcd at ``endpoints`` under ``prefix``. Connects
    lazily on the first call; :meth:`close` releases the connection (held locks stay until
    their leases run out)."""

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        prefix: str = "/micro/sync/",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.settings = EtcdSettings(tuple(listed), prefix, timeout)
        self._conn = EtcdConnection(self.settings, ID)
        self._clock = clock

    def _key(self, name: str) -> bytes:
        if not name or len(name) > MAX_NAME:
            raise bad_request(ID, f"lock name must be 1..{MAX_NAME} characters")
        return (self.settings.prefix + "locks/" + quote(name, safe="")).encode()

    async def _grant(self, ttl: float) -> int:
        granted: Any = await self._conn.call(lambda c: c.lease(max(1, math.ceil(ttl))))
        lease_id: int = granted.id
        return lease_id

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self._conn.call(lambda c: c.revoke_lease(lease_id))
        except MicroError:
            pass  # the lease runs out by itself

    async def acquire(
        self, name: str, ttl: float, *, wait: float = 0, owner: str | None = None
    ) -> Lease:
        """Hold lock ``name`` for ``ttl`` s; token = the key's create revision."""
        key = self._key(name)
        _check_ttl(ttl)
        if not 0 <= wait <= MAX_WAIT:
            raise bad_request(ID, f"wait must be 0..{MAX_WAIT} seconds, got {wait}")
        owner = owner or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            token = await self._try(key, owner, ttl)
            if token is not None:
                return Lease(name, owner, token, self._clock() + ttl)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise conflict(ID, f"lock {name!r} is held")
                await asyncio.sleep(min(POLL_INTERVAL * 2, remaining))
                if await self._conn.call(lambda c: c.get(key)) is None:
                    break

    async def _try(self, key: bytes, owner: str, ttl: float) -> int | None:
        lease_id = await self._grant(ttl)

        async def txn(c: Any) -> tuple[bool, list[Any]]:
            t = c.transactions
            result: tuple[bool, list[Any]] = await c.transaction(
                compare=[t.create(key) == 0],
                success=[t.put(key, owner.encode(), lease=lease_id), t.get(key)],
                failure=[],
            )
            return result

        try:
            ok, responses = await self._conn.call(txn)
        except BaseException:
            await self._revoke(lease_id)
            raise
        if not ok:
            await self._revoke(lease_id)
            return None
        token: int = responses[1][0][1].create_revision
        return token

    async def _fenced(self, lease: Lease, ops: Callable[[Any], list[Any]]) -> Any | None:
        """Run ``ops`` if the lock still has ``lease.token``; the key as it was, or None."""
        key = self._key(lease.name)

        async def txn(c: Any) -> tuple[bool, list[Any]]:
            t = c.transactions
            result: tuple[bool, list[Any]] = await c.transaction(
                compare=[t.create(key) == lease.token], success=[t.get(key), *ops(c)], failure=[]
            )
            return result

        ok, responses = await self._conn.call(txn)
        if not ok or not responses[0]:
            return None
        return responses[0][0][1]

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Move a live lock to a new lease of ``ttl`` s; ``conflict`` if it was lost."""
        _check_ttl(ttl)
        key = self._key(lease.name)
        lease_id = await self._grant(ttl)
        try:
            old = await self._fenced(
                lease, lambda c: [c.transactions.put(key, lease.owner.encode(), lease=lease_id)]
            )
        except BaseException:
            await self._revoke(lease_id)
            raise
        if old is None:
            await self._revoke(lease_id)
            raise conflict(ID, f"lease of lock {lease.name!r} was lost")
        if old.lease:
            await self._revoke(old.lease)
        return Lease(lease.name, lease.owner, lease.token, self._clock() + ttl)

    async def release(self, lease: Lease) -> None:
        """Free the lock; ``conflict`` if the lease was lost."""
        key = self._key(lease.name)
        old = await self._fenced(lease, lambda c: [c.transactions.delete(key)])
        if old is None:
            raise conflict(ID, f"lease of lock {lease.name!r} was lost")
        if old.lease:
            await self._revoke(old.lease)

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()
