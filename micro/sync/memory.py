"""The in-memory sync backend: complete and deterministic, with an injectable clock.

Time-based state (lock expiry, task due times and leases) is evaluated lazily against the
clock on every call, so a test advances a fake clock and calls again: nothing sleeps.
Waiters (``acquire(wait=...)``, ``campaign``, ``observe``) re-check every
:data:`~micro.sync.POLL_INTERVAL` seconds of real time and on every change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ._base import LocalSync
from ._tables import MemoryTables, Tables

__all__ = ["MemorySync"]

T = TypeVar("T")


class MemorySync(LocalSync):
    """Locks, elections, maps and queues in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._tables = MemoryTables()

    async def _run(self, fn: Callable[[Tables], T]) -> T:
        return fn(self._tables)
