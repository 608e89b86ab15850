"""Status changes of the local runtime's processes, published as events (``runtime.status``)."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from ..events import Events
from ._supervisor import Supervisor

__all__ = ["TOPIC", "StatusEvent", "StatusEvents"]

log = logging.getLogger("micro.runtime")

TOPIC = "runtime.status"
"""Where the runtime publishes status changes."""

_CLOSE_TIMEOUT = 5.0
_MAX_QUEUED = 10_000


class StatusEvent(msgspec.Struct):
    """The JSON body of a ``runtime.status`` event: ``status`` is one of ``started``,
    ``exited``, ``restarting``, ``crashed`` (could not be started), ``stopped`` or
    ``updated`` (a rolling update finished; ``instance`` and ``pid`` are then null)."""

    service: str
    instance: int | None
    status: str
    pid: int | None
    detail: str = ""


class StatusEvents:
    """Publishes status events in order from one background task, so that a supervisor
    never waits for the events backend; a failed publish is logged and dropped. Without a
    backend, nothing is published."""

    def __init__(self, events: Events | None) -> None:
        self._events = events
        self._queue: asyncio.Queue[StatusEvent | None] = asyncio.Queue(_MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None

    def emit(self, member: Supervisor, status: str, detail: str) -> None:
        """A supervisor's status change (the Hooks.emit callback)."""
        proc = member.proc
        self.publish(member.spec.name, member.index, status, proc.pid if proc else None, detail)

    def publish(
        self, service: str, instance: int | None, status: str, pid: int | None, detail: str
    ) -> None:
        """Queue one event."""
        if self._events is None:
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait(StatusEvent(service, instance, status, pid, detail))
        except asyncio.QueueFull:
            log.warning("runtime: status events queue full; dropped %s %s", service, status)

    async def close(self) -> None:
        """Publish what is queued (for at most a few seconds), then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _CLOSE_TIMEOUT)
        except TimeoutError:
            self._task.cancel()
            log.warning("runtime: status events not all published within %g s", _CLOSE_TIMEOUT)

    async def _run(self) -> None:
        assert self._events is not None
        while (event := await self._queue.get()) is not None:
            try:
                await self._events.publish(TOPIC, msgspec.json.encode(event))
            except Exception as exc:
                log.warning(
                    "runtime: cannot publish %s of %s: %s", event.status, event.service, exc
                )
