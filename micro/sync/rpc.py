"""Sync as a client of the ``sync`` service hosted by ``micro server``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from ..client import Client
from . import MAX_ATTEMPTS, MAX_WAIT, Lease, MapEntry, Task
from .messages import (
    AcquireRequest,
    CampaignRequest,
    DeadResponse,
    Empty,
    EnqueueRequest,
    EnqueueResponse,
    FailRequest,
    LeaderResponse,
    LeaseRequest,
    LeaseResponse,
    MapGetResponse,
    MapKeyRequest,
    MapListResponse,
    MapPutRequest,
    MapRequest,
    NameRequest,
    QueueRequest,
    RenewRequest,
    TaskRequest,
    VersionResponse,
)

__all__ = ["RpcSync"]

SERVICE = "sync"
T = TypeVar("T")


class RpcSync:
    """Talks to the sync service at ``address`` (``host:port`` of ``micro server``).

    Calls that wait (``acquire`` with ``wait``, ``campaign``) get ``timeout`` plus the wait
    as their RPC deadline."""

    def __init__(self, address: str, client: Client | None = None, timeout: float = 5.0) -> None:
        self.address = address
        self._client = client or Client()
        self._owns_client = client is None
        self._timeout = timeout

    async def _call(self, endpoint: str, req: Any, resp: type[T], wait: float = 0.0) -> T:
        extra = wait if isinstance(wait, int | float) and 0 < wait <= MAX_WAIT else 0.0
        return await self._client.call(
            SERVICE,
            f"Sync.{endpoint}",
            req,
            address=self.address,
            timeout=self._timeout + extra,
            response_type=resp,
        )

    async def acquire(
        self, name: str, ttl: float, *, wait: float = 0, owner: str | None = None
    ) -> Lease:
        """Hold lock ``name`` for ``ttl`` s with a new fencing token; ``conflict`` if held."""
        return await self._call("Acquire", AcquireRequest(name, ttl, wait, owner), Lease, wait)

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a live lease to ``ttl`` s from now; ``conflict`` if it was lost."""
        return await self._call("Renew", RenewRequest(lease, ttl), Lease)

    async def release(self, lease: Lease) -> None:
        """Free the lock; ``conflict`` if the lease was lost."""
        await self._call("Release", lease, Empty)

    async def campaign(
        self, election: str, candidate: str, ttl: float, *, timeout: float = MAX_WAIT
    ) -> Lease:
        """Wait (up to ``timeout`` s) to lead ``election``; ``conflict`` on timeout."""
        req = CampaignRequest(election, candidate, ttl, timeout)
        return await self._call("Campaign", req, Lease, timeout)

    async def resign(self, lease: Lease) -> None:
        """Step down as leader."""
        await self._call("Resign", lease, Empty)

    async def leader(self, election: str) -> str | None:
        """The current leader of ``election``, if any."""
        return (await self._call("Leader", NameRequest(election), LeaderResponse)).leader

    async def observe(self, election: str) -> AsyncIterator[str | None]:
        """The leader now, then each time it changes (a server stream)."""
        stream = self._client.stream(
            SERVICE,
            "Sync.Observe",
            NameRequest(election),
            address=self.address,
            response_type=LeaderResponse,
        )
        try:
            async for msg in stream:
                yield msg.leader
        finally:
            await stream.close()

    async def map_get(self, map: str, key: str) -> tuple[bytes, int]:
        """A key's value and version; ``not_found`` if absent."""
        resp = await self._call("MapGet", MapKeyRequest(map, key), MapGetResponse)
        return resp.value, resp.version

    async def map_put(self, map: str, key: str, value: bytes, *, version: int | None = None) -> int:
        """Set a key (only at ``version`` if given; 0: create only); the new version."""
        req = MapPutRequest(map, key, value, version)
        return (await self._call("MapPut", req, VersionResponse)).version

    async def map_delete(self, map: str, key: str, version: int | None = None) -> None:
        """Delete a key (only at ``version`` if given); ``not_found`` if absent."""
        await self._call("MapDelete", MapKeyRequest(map, key, version), Empty)

    async def map_list(self, map: str) -> list[MapEntry]:
        """Every entry of a map, by key."""
        return (await self._call("MapList", MapRequest(map), MapListResponse)).entries

    async def enqueue(
        self, queue: str, body: bytes, *, delay: float = 0, max_attempts: int = MAX_ATTEMPTS
    ) -> str:
        """Add a task, due ``delay`` s from now; its id."""
        req = EnqueueRequest(queue, body, delay, max_attempts)
        return (await self._call("Enqueue", req, EnqueueResponse)).id

    async def lease(self, queue: str, worker: str, lease_time: float) -> Task | None:
        """The next due task, held by ``worker`` for ``lease_time`` s; None if none is due."""
        req = LeaseRequest(queue, worker, lease_time)
        return (await self._call("Lease", req, LeaseResponse)).task

    async def ack(self, task: Task) -> None:
        """Finish a leased task (deletes it)."""
        await self._call("Ack", TaskRequest(task), Empty)

    async def fail(self, task: Task, error: str) -> None:
        """Give a leased task back for a retry with backoff, or dead-letter it."""
        await self._call("Fail", FailRequest(task, error), Empty)

    async def dead(self, queue: str) -> list[Task]:
        """The dead-lettered tasks of ``queue``, oldest first."""
        return (await self._call("Dead", QueueRequest(queue), DeadResponse)).tasks

    async def close(self) -> None:
        """Close the connection to the server."""
        if self._owns_client:
            await self._client.close()
