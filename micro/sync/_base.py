"""The async half shared by the memory and SQLite backends: validation, waiting and
observing. Subclasses provide :meth:`LocalSync._run`, which runs one ``_logic`` function
atomically against their tables."""

from __future__ import annotations

import abc
import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ..errors import conflict
from . import ID, MAX_ATTEMPTS, MAX_WAIT, POLL_INTERVAL, Lease, MapEntry, Task
from . import _logic as logic
from ._tables import Tables

__all__ = ["LocalSync", "election_lock"]

T = TypeVar("T")


def election_lock(election: str) -> str:
    """The lock an election runs on."""
    return "election/" + logic.check_name("election", election)


class LocalSync(abc.ABC):
    """A :class:`~micro.sync.Sync` over tables this process owns."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._changed = asyncio.Event()  # set (and replaced) on every lock change
        self._ending = False  # observe() streams end (end_observers / close)

    @abc.abstractmethod
    async def _run(self, fn: Callable[[Tables], T]) -> T: ...

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, attempt: Callable[[], Any], wait: float) -> Any:
        """Call ``attempt`` until it gives non-None or ``wait`` s (real time) pass."""
        deadline = time.monotonic() + wait
        while True:
            changed = self._changed
            result = await attempt()
            left = deadline - time.monotonic()
            if result is not None or left <= 0:
                return result
            try:
                await asyncio.wait_for(changed.wait(), min(left, POLL_INTERVAL))
            except TimeoutError:
                pass

    # -- locks ------------------------------------------------------------------------------

    async def acquire(
        self, name: str, ttl: float, *, wait: float = 0, owner: str | None = None
    ) -> Lease:
        """Hold lock ``name`` for ``ttl`` s with a new fencing token; ``conflict`` if held."""
        logic.check_name("name", name)
        ttl = logic.check_seconds("ttl", ttl)
        wait = logic.check_wait(wait)
        who = logic.check_name("owner", owner) if owner is not None else uuid.uuid4().hex

        async def attempt() -> Lease | None:
            return await self._run(lambda t: logic.acquire(t, self._clock(), name, who, ttl))

        lease: Lease | None = await self._until(attempt, wait)
        if lease is None:
            raise conflict(ID, f"lock {name!r} is held by someone else")
        self._notify()
        return lease

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a live lease to ``ttl`` s from now; ``conflict`` if it was lost."""
        ttl = logic.check_seconds("ttl", ttl)
        return await self._run(lambda t: logic.renew(t, self._clock(), lease, ttl))

    async def release(self, lease: Lease) -> None:
        """Free the lock; ``conflict`` if the lease was lost."""
        await self._run(lambda t: logic.release(t, self._clock(), lease))
        self._notify()

    # -- elections --------------------------------------------------------------------------

    async def campaign(
        self, election: str, candidate: str, ttl: float, *, timeout: float = MAX_WAIT
    ) -> Lease:
        """Wait (up to ``timeout`` s) to lead ``election``; ``conflict`` on timeout."""
        logic.check_name("candidate", candidate)
        logic.check_seconds("timeout", timeout, zero=True, most=MAX_WAIT)
        return await self.acquire(election_lock(election), ttl, wait=timeout, owner=candidate)

    async def resign(self, lease: Lease) -> None:
        """Step down as leader."""
        await self.release(lease)

    async def leader(self, election: str) -> str | None:
        """The current leader of ``election``, if any."""
        name = election_lock(election)
        return await self._run(lambda t: logic.holder(t, self._clock(), name))

    async def observe(self, election: str) -> AsyncIterator[str | None]:
        """The leader now, then each time it changes (including to None)."""
        name = election_lock(election)
        last: str | None = None
        first = True
        while not self._ending:
            changed = self._changed
            now = await self._run(lambda t: logic.holder(t, self._clock(), name))
            if first or now != last:
                first, last = False, now
                yield now
            try:
                await asyncio.wait_for(changed.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass

    # -- maps -------------------------------------------------------------------------------

    async def map_get(self, map: str, key: str) -> tuple[bytes, int]:
        """A key's value and version; ``not_found`` if absent."""
        logic.check_name("map", map), logic.check_name("key", key)
        return await self._run(lambda t: logic.map_get(t, map, key))

    async def map_put(self, map: str, key: str, value: bytes, *, version: int | None = None) -> int:
        """Set a key (only at ``version`` if given; 0: create only); the new version."""
        logic.check_name("map", map), logic.check_name("key", key)
        return await self._run(lambda t: logic.map_put(t, map, key, value, version))

    async def map_delete(self, map: str, key: str, version: int | None = None) -> None:
        """Delete a key (only at ``version`` if given); ``not_found`` if absent."""
        logic.check_name("map", map), logic.check_name("key", key)
        await self._run(lambda t: logic.map_delete(t, map, key, version))

    async def map_list(self, map: str) -> list[MapEntry]:
        """Every entry of a map, by key."""
        logic.check_name("map", map)
        return await self._run(lambda t: logic.map_list(t, map))

    # -- queues -----------------------------------------------------------------------------

    async def enqueue(
        self, queue: str, body: bytes, *, delay: float = 0, max_attempts: int = MAX_ATTEMPTS
    ) -> str:
        """Add a task, due ``delay`` s from now; its id."""
        logic.check_name("queue", queue)
        delay = logic.check_seconds("delay", delay, zero=True)
        return await self._run(
            lambda t: logic.enqueue(t, self._clock(), queue, body, delay, max_attempts)
        )

    async def lease(self, queue: str, worker: str, lease_time: float) -> Task | None:
        """The next due task, held by ``worker`` for ``lease_time`` s; None if none is due."""
        logic.check_name("queue", queue), logic.check_name("worker", worker)
        secs = logic.check_seconds("lease_time", lease_time)
        return await self._run(lambda t: logic.lease(t, self._clock(), queue, worker, secs))

    async def ack(self, task: Task) -> None:
        """Finish a leased task (deletes it)."""
        await self._run(lambda t: logic.ack(t, self._clock(), task))

    async def fail(self, task: Task, error: str) -> None:
        """Give a leased task back for a retry with backoff, or dead-letter it."""
        await self._run(lambda t: logic.fail(t, self._clock(), task, str(error)[:4096]))

    async def dead(self, queue: str) -> list[Task]:
        """The dead-lettered tasks of ``queue``, oldest first."""
        logic.check_name("queue", queue)
        return await self._run(lambda t: logic.dead(t, queue))

    def end_observers(self) -> None:
        """End every :meth:`observe` stream (a server stopping calls it first)."""
        self._ending = True
        self._notify()

    async def close(self) -> None:
        """End observers; subclasses also release their resources."""
        self.end_observers()
