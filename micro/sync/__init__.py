"""Sync: distributed synchronisation — locks, leader election, maps, cron, task queues.

**Locks** have a TTL and a *fencing token*: every acquisition of a lock name gets a token
strictly greater than any token handed out before for that name (the SQLite backend keeps
the counter on disk, so it never goes back, even across restarts). A holder passes its
token to whatever it protects, which rejects a smaller token than the last one it saw. A
lease that expired is dead: :meth:`Sync.renew` and :meth:`Sync.release` answer
``conflict``. ``acquire(..., wait=s)`` waits up to ``s`` seconds (real time, at most
:data:`MAX_WAIT`) for the lock to be free, else answers ``conflict`` at once.

**Leader election** is built on the lock named ``election/<name>``: ``campaign`` waits to
hold it, ``resign`` releases it, ``leader`` names the live holder, ``observe`` streams the
leader each time it changes.

**Maps** hold versioned values: every put returns a new version (1, 2, ...); a put or
delete with ``version=n`` succeeds only if the current version is ``n`` (``0``: only if the
key does not exist), else ``conflict``.

**Queues** (workers): ``enqueue`` a body (optionally delayed), ``lease`` hands the next due
task to one worker for ``lease_time`` seconds; ``ack`` deletes it, ``fail`` schedules a
retry after ``BACKOFF_BASE * 2**(attempt-1)`` seconds (at most :data:`BACKOFF_MAX`) until
``max_attempts`` attempts were made, then moves it to the dead-letter list (``dead``). A
lease that expires without an ack is redelivered (it counts as an attempt). ``ack`` and
``fail`` need a live lease: ``conflict`` otherwise.

Every time-based decision reads an injectable clock. Waiting (``acquire`` with ``wait``,
``campaign``, ``observe``) wakes on every change made through the same backend and
re-checks every :data:`POLL_INTERVAL` seconds of real time (so a fake clock moved forward is
noticed).

Backends: :mod:`micro.sync.memory`, :mod:`micro.sync.sqlite`, :mod:`micro.sync.rpc` (the
client of the ``sync`` service). :mod:`micro.sync.cron` runs a job once per schedule tick
across replicas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "ID",
    "MAX_ATTEMPTS",
    "MAX_NAME",
    "MAX_VALUE",
    "MAX_WAIT",
    "POLL_INTERVAL",
    "Lease",
    "MapEntry",
    "Sync",
    "Task",
]

ID = "sync"
MAX_NAME = 256  # characters in a lock, election, map, key, queue or owner name
MAX_VALUE = 1 << 20  # bytes in a map value or a task body
MAX_WAIT = 300.0  # seconds acquire/campaign may wait
MAX_ATTEMPTS = 5  # default attempts of a task before it is dead-lettered
BACKOFF_BASE = 1.0  # seconds before the first retry of a failed task
BACKOFF_MAX = 300.0  # longest retry delay
POLL_INTERVAL = 0.05  # seconds (real time) between re-checks while waiting


class Lease(msgspec.Struct, frozen=True):
    """A held lock: who holds it, its fencing token and when it expires (clock seconds)."""

    name: str
    owner: str
    token: int
    expires: float


class MapEntry(msgspec.Struct, frozen=True):
    """One key of a map with its value and version."""

    key: str
    value: bytes
    version: int


class Task(msgspec.Struct, frozen=True, omit_defaults=True):
    """A queued task as leased by a worker (``attempt`` counts from 1) or as dead-lettered
    (``error`` says why)."""

    id: str
    queue: str
    body: bytes
    attempt: int = 0
    max_attempts: int = MAX_ATTEMPTS
    worker: str = ""
    lease_expires: float = 0.0
    error: str = ""


@runtime_checkable
class Sync(Protocol):
    """What every sync backend provides."""

    async def acquire(
        self, name: str, ttl: float, *, wait: float = 0, owner: str | None = None
    ) -> Lease:
        """Hold lock ``name`` for ``ttl`` s with a new fencing token; ``conflict`` if held."""
        ...

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a live lease to ``ttl`` s from now; ``conflict`` if it was lost."""
        ...

    async def release(self, lease: Lease) -> None:
        """Free the lock; ``conflict`` if the lease was lost."""
        ...

    async def campaign(
        self, election: str, candidate: str, ttl: float, *, timeout: float = MAX_WAIT
    ) -> Lease:
        """Wait (up to ``timeout`` s) to lead ``election``; ``conflict`` on timeout."""
        ...

    async def resign(self, lease: Lease) -> None:
        """Step down as leader."""
        ...

    async def leader(self, election: str) -> str | None:
        """The current leader of ``election``, if any."""
        ...

    def observe(self, election: str) -> AsyncIterator[str | None]:
        """The leader now, then each time it changes."""
        ...

    async def map_get(self, map: str, key: str) -> tuple[bytes, int]:
        """A key's value and version; ``not_found`` if absent."""
        ...

    async def map_put(self, map: str, key: str, value: bytes, *, version: int | None = None) -> int:
        """Set a key (only at ``version`` if given; 0: create only); the new version."""
        ...

    async def map_delete(self, map: str, key: str, version: int | None = None) -> None:
        """Delete a key (only at ``version`` if given); ``not_found`` if absent."""
        ...

    async def map_list(self, map: str) -> list[MapEntry]:
        """Every entry of a map, by key."""
        ...

    async def enqueue(
        self, queue: str, body: bytes, *, delay: float = 0, max_attempts: int = MAX_ATTEMPTS
    ) -> str:
        """Add a task, due ``delay`` s from now; its id."""
        ...

    async def lease(self, queue: str, worker: str, lease_time: float) -> Task | None:
        """The next due task, held by ``worker`` for ``lease_time`` s; None if none is due."""
        ...

    async def ack(self, task: Task) -> None:
        """Finish a leased task (deletes it)."""
        ...

    async def fail(self, task: Task, error: str) -> None:
        """Give a leased task back for a retry with backoff, or dead-letter it."""
        ...

    async def dead(self, queue: str) -> list[Task]:
        """The dead-lettered tasks of ``queue``, oldest first."""
        ...

    async def close(self) -> None:
        """Release resources (connections, threads)."""
        ...
