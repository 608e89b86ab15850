"""Cron: run a job once per schedule tick across every replica.

Every replica runs a :class:`Cron` with the same ``name`` and schedule over one shared sync
backend. A replica that finds a tick due claims it with a compare-and-set on map ``cron``,
key ``<name>`` (the value is the last claimed tick): only one claim of each tick succeeds,
so the job fires exactly once per tick in total (at most once if the claiming replica dies
mid-job: there is no retry). Ticks are claimed in increasing order and never twice.

Missed runs: when the due tick is more than ``grace`` seconds old (replicas were down), the
``skip`` policy claims it without running the job; ``run_once`` runs the job once for it
(one run for all the ticks that were missed). A tick that came before the cron's first
claim ever is claimed without a run under both policies.

Schedules are parsed by :func:`parse` (see :mod:`micro.sync._schedule` for the grammar).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from ..errors import MicroError, bad_request
from . import ID, Sync
from ._logic import check_name, check_seconds
from ._schedule import CronSchedule, EverySchedule, Schedule, parse

__all__ = ["Cron", "CronSchedule", "EverySchedule", "Job", "Schedule", "parse"]

log = logging.getLogger("micro.sync.cron")

Job = Callable[[float], Awaitable[None]]
"""``async def job(tick: float) -> None``: ``tick`` is the schedule time being run."""

MAP = "cron"


def _tick(value: bytes) -> float | None:
    try:
        return float(value.decode())
    except ValueError:  # absent or not written by a Cron: no tick claimed yet
        return None


class Cron:
    """Fires ``job`` once per tick of ``schedule`` across replicas sharing ``sync``.

    Call :meth:`run_pending` yourself (tests, with a fake clock) or :meth:`start` a
    background loop that wakes at each tick (at least every ``poll`` seconds of real time)
    and :meth:`stop` it."""

    def __init__(
        self,
        sync: Sync,
        name: str,
        schedule: str | Schedule,
        job: Job,
        *,
        policy: Literal["skip", "run_once"] = "skip",
        grace: float = 30.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if policy not in ("skip", "run_once"):
            raise bad_request(ID, f"policy must be 'skip' or 'run_once', not {policy!r}")
        self.name = check_name("name", name)
        self.schedule = parse(schedule) if isinstance(schedule, str) else schedule
        self.policy = policy
        self.grace = check_seconds("grace", grace, zero=True)
        self.poll = check_seconds("poll", poll)
        self.fired = 0  # ticks this replica ran the job for
        self._sync, self._job, self._clock = sync, job, clock
        self._task: asyncio.Task[None] | None = None

    async def run_pending(self) -> bool:
        """Claim and run the due tick if no replica has; True if this replica ran the job."""
        now = self._clock()
        due = self.schedule.prev(now)
        try:
            value, version = await self._sync.map_get(MAP, self.name)
        except MicroError as err:
            if err.code != "not_found":
                raise
            value, version = b"", 0
        last = _tick(value)
        if last is not None and due <= last:
            return False
        try:
            await self._sync.map_put(MAP, self.name, repr(due).encode(), version=version)
        except MicroError as err:
            if err.code == "conflict":  # another replica claimed a tick first
                return False
            raise
        late = now - due > self.grace
        if late and (last is None or self.policy == "skip"):
            log.info("cron %s: skipped the missed tick %.0f", self.name, due)
            return False
        self.fired += 1
        await self._job(due)
        return True

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_pending()
            except Exception:
                log.exception("cron %s: a run failed", self.name)
            wait = self.schedule.next(self._clock()) - self._clock()
            await asyncio.sleep(min(max(wait, 0.0), self.poll))

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"cron {self.name}")

    async def stop(self) -> None:
        """Stop the background loop (a running job is cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
