"""Deadlines of many calls kept with one event-loop timer.

A loop timer per call costs more than the rest of a pipelined call's bookkeeping (on
uvloop each ``call_later`` allocates a libuv timer). Here each connection keeps the
deadline of every call in a dict and one timer armed for the earliest; when it fires, the
overdue calls expire and it is armed again. Adding a call whose deadline is later than the
armed one (the usual case: same timeout, later start) costs a dict store.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["Deadlines"]


class Deadlines:
    """Call ids with a deadline in ``loop.time()`` units; ``on_expire(id)`` when one passes."""

    __slots__ = ("_armed_at", "_at", "_handle", "_loop", "_on_expire")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expire: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_expire = on_expire
        self._at: dict[int, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def __len__(self) -> int:
        return len(self._at)

    def add(self, call_id: int, when: float) -> None:
        """Expire ``call_id`` at loop time ``when`` unless discarded before."""
        self._at[call_id] = when
        if when < self._armed_at:
            self._arm(when)

    def discard(self, call_id: int) -> None:
        """The call ended: forget its deadline (the timer is left; it re-arms lazily)."""
        self._at.pop(call_id, None)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        now = self._loop.time()
        expired = [call_id for call_id, when in self._at.items() if when <= now]
        for call_id in expired:
            del self._at[call_id]
        for call_id in expired:
            self._on_expire(call_id)
        if self._at:
            self._arm(min(self._at.values()))

    def close(self) -> None:
        """Forget every deadline and stop the timer."""
        self._at.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf
