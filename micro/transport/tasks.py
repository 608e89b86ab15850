"""Start a handler's Task, eagerly where Python can.

Python 3.12+ can run a new Task's first step at once (``eager_start``): a handler that
never waits then finishes inside ``data_received`` with no trip through the event loop,
and ``asyncio.current_task()``, ``asyncio.timeout()`` and ``TaskGroup`` still work in it
because it does run in its Task. On 3.11 the Task starts on the next loop turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["EAGER", "start_task"]

T = TypeVar("T")

EAGER = sys.version_info >= (3, 12)


def start_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    context: contextvars.Context | None = None,
) -> asyncio.Task[T]:
    """A Task for ``coro`` in ``context``; on 3.12+ already run up to its first wait (it
    may even be done when this returns)."""
    if EAGER:
        return asyncio.Task(coro, loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro, context=context)
