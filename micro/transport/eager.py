"""Run a handler coroutine eagerly: no Task unless it actually has to wait.

Most handlers finish without suspending. Python 3.12's ``asyncio.eager_task_factory`` does
this for whole tasks, but it still allocates a Task per call and is absent on 3.11; this
module steps the coroutine once by hand and only when it suspends hands the rest of it to a
Task, re-yielding the future it is waiting on so asyncio's machinery sees nothing unusual.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["DONE", "FAILED", "SUSPENDED", "resume", "step"]

DONE = 0
FAILED = 1
SUSPENDED = 2


def step(coro: Coroutine[Any, Any, Any]) -> tuple[int, Any]:
    """Run ``coro`` to its first suspension.

    Returns ``(DONE, result)``, ``(FAILED, exception)`` or ``(SUSPENDED, yielded)``; in the
    last case pass ``coro`` and ``yielded`` to :func:`resume` to continue it in a Task.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return DONE, stop.value
    except (Exception, asyncio.CancelledError) as exc:
        # CancelledError too: awaiting an already-cancelled future raises it without
        # suspending, and it must not escape into the protocol callback running us.
        return FAILED, exc
    return SUSPENDED, yielded


class _Continue:
    """An awaitable that drives an already-started coroutine to completion."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        yielded = self._first
        self._first = None
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation and friends go to the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Continue(coro, first)


def resume(
    coro: Coroutine[Any, Any, Any], yielded: Any, context: contextvars.Context | None = None
) -> asyncio.Task[Any]:
    """Continue a coroutine suspended by :func:`step` in a new Task, running in ``context``
    (pass the one :func:`step` ran in; default: a copy of the current context)."""
    return asyncio.get_running_loop().create_task(_finish(coro, yielded), context=context)
