"""The ``sync`` RPC service: a thin layer over whichever sync backend runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..context import Context
from . import Lease, Sync
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

__all__ = ["SyncHandler"]


class SyncHandler:
    """Serves ``Sync.Acquire``, ``Renew``, ``Release``, ``Campaign``, ``Resign``, ``Leader``,
    ``Observe`` (server stream), ``MapGet``, ``MapPut``, ``MapDelete``, ``MapList``,
    ``Enqueue``, ``Lease``, ``Ack``, ``Fail`` and ``Dead``."""

    def __init__(self, backend: Sync) -> None:
        self._backend = backend

    async def acquire(self, ctx: Context, req: AcquireRequest) -> Lease:
        """Take a lock."""
        return await self._backend.acquire(req.name, req.ttl, wait=req.wait, owner=req.owner)

    async def renew(self, ctx: Context, req: RenewRequest) -> Lease:
        """Extend a lease."""
        return await self._backend.renew(req.lease, req.ttl)

    async def release(self, ctx: Context, req: Lease) -> Empty:
        """Free a lock."""
        await self._backend.release(req)
        return Empty()

    async def campaign(self, ctx: Context, req: CampaignRequest) -> Lease:
        """Wait to lead an election."""
        return await self._backend.campaign(
            req.election, req.candidate, req.ttl, timeout=req.timeout
        )

    async def resign(self, ctx: Context, req: Lease) -> Empty:
        """Step down as leader."""
        await self._backend.resign(req)
        return Empty()

    async def leader(self, ctx: Context, req: NameRequest) -> LeaderResponse:
        """The current leader."""
        return LeaderResponse(await self._backend.leader(req.name))

    async def observe(self, ctx: Context, req: NameRequest) -> AsyncIterator[LeaderResponse]:
        """The leader now, then on every change."""
        async for leader in self._backend.observe(req.name):
            yield LeaderResponse(leader)

    async def map_get(self, ctx: Context, req: MapKeyRequest) -> MapGetResponse:
        """A key's value and version."""
        value, version = await self._backend.map_get(req.map, req.key)
        return MapGetResponse(value, version)

    async def map_put(self, ctx: Context, req: MapPutRequest) -> VersionResponse:
        """Set a key (compare-and-set at a version)."""
        return VersionResponse(
            await self._backend.map_put(req.map, req.key, req.value, version=req.version)
        )

    async def map_delete(self, ctx: Context, req: MapKeyRequest) -> Empty:
        """Delete a key."""
        await self._backend.map_delete(req.map, req.key, req.version)
        return Empty()

    async def map_list(self, ctx: Context, req: MapRequest) -> MapListResponse:
        """Every entry of a map."""
        return MapListResponse(await self._backend.map_list(req.map))

    async def enqueue(self, ctx: Context, req: EnqueueRequest) -> EnqueueResponse:
        """Add a task."""
        return EnqueueResponse(
            await self._backend.enqueue(
                req.queue, req.body, delay=req.delay, max_attempts=req.max_attempts
            )
        )

    async def lease(self, ctx: Context, req: LeaseRequest) -> LeaseResponse:
        """Lease the next due task."""
        return LeaseResponse(await self._backend.lease(req.queue, req.worker, req.lease_time))

    async def ack(self, ctx: Context, req: TaskRequest) -> Empty:
        """Finish a task."""
        await self._backend.ack(req.task)
        return Empty()

    async def fail(self, ctx: Context, req: FailRequest) -> Empty:
        """Retry or dead-letter a task."""
        await self._backend.fail(req.task, req.error)
        return Empty()

    async def dead(self, ctx: Context, req: QueueRequest) -> DeadResponse:
        """Dead-lettered tasks."""
        return DeadResponse(await self._backend.dead(req.queue))
