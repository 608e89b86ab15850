"""The ``sync`` RPC service: a thin layer over whichever sync backend runs it.

With ``tenancy`` on (see :mod:`micro.auth.tenancy`), every name is namespaced transparently
by the scheme events and broker topics use (:class:`~micro.auth.tenancy.Names`): for a
caller confined to namespace ``N`` other than ``micro``, lock, election, map and queue names
and worker names are stored as ``f"{N}--{name}"`` (:data:`~micro.auth.tenancy.NAME_SEP`);
map keys, lock owners and election candidates are not (they live inside a namespaced lock,
election or map). Answers show the caller's names: ``Lease.name``, ``Task.queue`` and
``Task.worker`` (from ``Lease`` and ``Dead``), and names in error details. Leases and tasks
the caller hands back (``Renew``, ``Release``, ``Resign``, ``Ack``, ``Fail``) are mapped to
the stored names again, so they can only touch the caller's own locks and tasks: a task is
acked or failed only with the worker name that leased it, which is namespaced too.

An election ``e`` runs on the lock ``election/<e>`` (see :mod:`micro.sync`); the namespace
goes after that fixed head, so in ``N`` election ``e`` is the lock ``election/N--e``, which is
also what the caller's lock ``election/e`` maps to: inside a namespace the two stay the same
lock, as without tenancy.

Names of ``micro`` are stored unprefixed. Names may otherwise use any printable character,
so a confined caller's names (``micro``'s too) may not contain ``--`` nor begin with ``-``
(``bad_request``): every stored name then belongs to exactly one namespace. They must also
fit in :data:`~micro.sync.MAX_NAME` characters once prefixed. Unrestricted callers (admins
of ``micro``) and handlers with ``tenancy`` off use names as stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from ..auth.tenancy import Names, caller_namespace, shown_errors
from ..context import Context
from . import ID, MAX_NAME, Lease, Sync, Task
from ._logic import check_name
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

_ELECTION = "election/"  # the head of an election's lock name (micro.sync._base.election_lock)


class _SyncNames(Names):
    """The shared scheme, plus lock names (elections' locks) and tasks."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, ID, MAX_NAME)

    def name(self, name: str, what: str) -> str:
        """A lock (other than an election's), map, queue, worker or election name."""
        return self.stored(check_name(what, name), what)

    def lock(self, name: str, what: str = "name") -> str:
        """A lock name: ``election/<e>`` is the lock of the caller's election ``e``."""
        check_name(what, name)
        tail = name[len(_ELECTION) :]
        if name.startswith(_ELECTION) and tail:
            return _ELECTION + self.stored(tail, what, room=MAX_NAME - len(_ELECTION))
        return self.stored(name, what)

    def shown_lock(self, stored: str) -> str:
        """The caller's name of a lock stored as ``stored`` (the inverse of :meth:`lock`)."""
        tail = stored[len(_ELECTION) :]
        if stored.startswith(_ELECTION) and tail:
            shown = self.shown(tail)
            if shown is not None:
                return _ELECTION + shown
        return self.show(stored)

    def lease_in(self, lease: Lease) -> Lease:
        return msgspec.structs.replace(lease, name=self.lock(lease.name, "lease name"))

    def lease_out(self, lease: Lease) -> Lease:
        return msgspec.structs.replace(lease, name=self.shown_lock(lease.name))

    def task_in(self, task: Task) -> Task:
        """A task handed back: the backend finds it by id and checks its (stored) worker."""
        queue, worker = self.stored(task.queue, "queue"), self.stored(task.worker, "worker")
        return msgspec.structs.replace(task, queue=queue, worker=worker)

    def task_out(self, task: Task) -> Task:
        worker = self.show(task.worker) if task.worker else task.worker
        return msgspec.structs.replace(task, queue=self.show(task.queue), worker=worker)


class SyncHandler:
    """Serves ``Sync.Acquire``, ``Renew``, ``Release``, ``Campaign``, ``Resign``, ``Leader``,
    ``Observe`` (server stream), ``MapGet``, ``MapPut``, ``MapDelete``, ``MapList``,
    ``Enqueue``, ``Lease``, ``Ack``, ``Fail`` and ``Dead``. ``tenancy``: keep each caller's
    namespace apart (see the module docstring)."""

    def __init__(self, backend: Sync, *, tenancy: bool = False) -> None:
        self._backend = backend
        self.tenancy = tenancy

    def _names(self, ctx: Context) -> _SyncNames | None:
        """The caller's naming; None: names as stored."""
        if not self.tenancy:
            return None
        namespace = caller_namespace(ctx)
        return None if namespace is None else _SyncNames(namespace)

    async def acquire(self, ctx: Context, req: AcquireRequest) -> Lease:
        """Take a lock."""
        names = self._names(ctx)
        if names is None:
            return await self._backend.acquire(req.name, req.ttl, wait=req.wait, owner=req.owner)
        name = names.lock(req.name)
        with shown_errors(names, {name: req.name}):
            lease = await self._backend.acquire(name, req.ttl, wait=req.wait, owner=req.owner)
        return names.lease_out(lease)

    async def renew(self, ctx: Context, req: RenewRequest) -> Lease:
        """Extend a lease."""
        names = self._names(ctx)
        if names is None:
            return await self._backend.renew(req.lease, req.ttl)
        lease = names.lease_in(req.lease)
        with shown_errors(names, {lease.name: req.lease.name}):
            return names.lease_out(await self._backend.renew(lease, req.ttl))

    async def release(self, ctx: Context, req: Lease) -> Empty:
        """Free a lock."""
        names = self._names(ctx)
        lease = req if names is None else names.lease_in(req)
        with shown_errors(names, {lease.name: req.name}):
            await self._backend.release(lease)
        return Empty()

    async def campaign(self, ctx: Context, req: CampaignRequest) -> Lease:
        """Wait to lead an election."""
        names = self._names(ctx)
        if names is None:
            return await self._backend.campaign(
                req.election, req.candidate, req.ttl, timeout=req.timeout
            )
        election = names.name(req.election, "election")
        renames = {election: req.election, _ELECTION + election: _ELECTION + req.election}
        with shown_errors(names, renames):
            lease = await self._backend.campaign(
                election, req.candidate, req.ttl, timeout=req.timeout
            )
        return names.lease_out(lease)

    async def resign(self, ctx: Context, req: Lease) -> Empty:
        """Step down as leader."""
        names = self._names(ctx)
        lease = req if names is None else names.lease_in(req)
        with shown_errors(names, {lease.name: req.name}):
            await self._backend.resign(lease)
        return Empty()

    async def leader(self, ctx: Context, req: NameRequest) -> LeaderResponse:
        """The current leader."""
        names = self._names(ctx)
        election = req.name if names is None else names.name(req.name, "election")
        with shown_errors(names, {election: req.name}):
            return LeaderResponse(await self._backend.leader(election))

    async def observe(self, ctx: Context, req: NameRequest) -> AsyncIterator[LeaderResponse]:
        """The leader now, then on every change."""
        names = self._names(ctx)
        election = req.name if names is None else names.name(req.name, "election")
        with shown_errors(names, {election: req.name}):
            async for leader in self._backend.observe(election):
                yield LeaderResponse(leader)

    async def map_get(self, ctx: Context, req: MapKeyRequest) -> MapGetResponse:
        """A key's value and version."""
        names = self._names(ctx)
        map = req.map if names is None else names.name(req.map, "map")
        with shown_errors(names, {map: req.map}):
            value, version = await self._backend.map_get(map, req.key)
        return MapGetResponse(value, version)

    async def map_put(self, ctx: Context, req: MapPutRequest) -> VersionResponse:
        """Set a key (compare-and-set at a version)."""
        names = self._names(ctx)
        map = req.map if names is None else names.name(req.map, "map")
        with shown_errors(names, {map: req.map}):
            return VersionResponse(
                await self._backend.map_put(map, req.key, req.value, version=req.version)
            )

    async def map_delete(self, ctx: Context, req: MapKeyRequest) -> Empty:
        """Delete a key."""
        names = self._names(ctx)
        map = req.map if names is None else names.name(req.map, "map")
        with shown_errors(names, {map: req.map}):
            await self._backend.map_delete(map, req.key, req.version)
        return Empty()

    async def map_list(self, ctx: Context, req: MapRequest) -> MapListResponse:
        """Every entry of a map."""
        names = self._names(ctx)
        map = req.map if names is None else names.name(req.map, "map")
        with shown_errors(names, {map: req.map}):
            return MapListResponse(await self._backend.map_list(map))

    async def enqueue(self, ctx: Context, req: EnqueueRequest) -> EnqueueResponse:
        """Add a task."""
        names = self._names(ctx)
        queue = req.queue if names is None else names.name(req.queue, "queue")
        with shown_errors(names, {queue: req.queue}):
            return EnqueueResponse(
                await self._backend.enqueue(
                    queue, req.body, delay=req.delay, max_attempts=req.max_attempts
                )
            )

    async def lease(self, ctx: Context, req: LeaseRequest) -> LeaseResponse:
        """Lease the next due task."""
        names = self._names(ctx)
        if names is None:
            return LeaseResponse(await self._backend.lease(req.queue, req.worker, req.lease_time))
        queue, worker = names.name(req.queue, "queue"), names.name(req.worker, "worker")
        with shown_errors(names, {queue: req.queue, worker: req.worker}):
            task = await self._backend.lease(queue, worker, req.lease_time)
        return LeaseResponse(None if task is None else names.task_out(task))

    async def ack(self, ctx: Context, req: TaskRequest) -> Empty:
        """Finish a task."""
        names = self._names(ctx)
        task = req.task if names is None else names.task_in(req.task)
        with shown_errors(names, {task.queue: req.task.queue, task.worker: req.task.worker}):
            await self._backend.ack(task)
        return Empty()

    async def fail(self, ctx: Context, req: FailRequest) -> Empty:
        """Retry or dead-letter a task."""
        names = self._names(ctx)
        task = req.task if names is None else names.task_in(req.task)
        with shown_errors(names, {task.queue: req.task.queue, task.worker: req.task.worker}):
            await self._backend.fail(task, req.error)
        return Empty()

    async def dead(self, ctx: Context, req: QueueRequest) -> DeadResponse:
        """Dead-lettered tasks."""
        names = self._names(ctx)
        if names is None:
            return DeadResponse(await self._backend.dead(req.queue))
        queue = names.name(req.queue, "queue")
        with shown_errors(names, {queue: req.queue}):
            tasks = await self._backend.dead(queue)
        return DeadResponse([names.task_out(t) for t in tasks])
