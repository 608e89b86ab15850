"""Watchers: which writes each one sees (:class:`Hub`), and a bounded queue each."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import MicroError, unavailable
from . import WATCH_BUFFER, WATCH_BYTES, Change
from ._paths import Path, join
from ._state import Applied
from ._tree import lookup, render, same

__all__ = ["Hub", "Watcher", "size_of"]

_json = msgspec.json.Encoder()


class Watcher:
    """A bounded queue of :class:`Change` records, iterated by the one who watches. Made by
    a :class:`Hub` (subscribed from the moment it exists) or by the RPC client, which feeds
    it from the stream; ``on_end`` is called once when it stops receiving."""

    __slots__ = ("_bytes", "_closed", "_error", "_items", "_on_end", "_waiter", "at")

    def __init__(self, at: Path, on_end: Callable[[Watcher], None] | None = None) -> None:
        self.at = at
        self._on_end = on_end
        self._items: deque[tuple[Change, int]] = deque()
        self._bytes = 0
        self._closed = False
        self._error: MicroError | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """True once it receives no more changes."""
        return self._closed

    def push(self, change: Change, size: int) -> None:
        """Queue ``change`` (``size`` bytes of JSON), or end a watcher that is too far behind."""
        if self._closed:
            return
        if len(self._items) >= WATCH_BUFFER or self._bytes + size > WATCH_BYTES:
            self.fail(
                unavailable(
                    "config",
                    f"watcher of {join(self.at)!r} fell too far behind ({len(self._items)} "
                    f"changes, {self._bytes} bytes unread); read afresh and watch again",
                )
            )
            return
        self._items.append((change, size))
        self._bytes += size
        self._wake()

    def fail(self, error: MicroError) -> None:
        """End with ``error``, raised after what is queued has been read."""
        if not self._closed:
            self._error = error
            self.end()

    def end(self) -> None:
        """Stop receiving; iteration finishes after what is queued."""
        if not self._closed:
            self._closed = True
            if self._on_end is not None:
                self._on_end(self)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Change:
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        change, size = self._items.popleft()
        self._bytes -= size
        return change

    async def aclose(self) -> None:
        """Stop watching and drop what is queued."""
        self._items.clear()
        self._bytes = 0
        self._error = None
        self.end()


class Hub:
    """The watchers of one backend, by namespace."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[Watcher]] = {}
        self._closed = False

    def watch(self, namespace: str, at: Path) -> Watcher:
        """A new, subscribed watcher (already ended once the hub is closed)."""
        watchers = self._watchers.setdefault(namespace, set())

        def forget(watcher: Watcher) -> None:
            watchers.discard(watcher)
            if not watchers and self._watchers.get(namespace) is watchers:
                del self._watchers[namespace]

        watcher = Watcher(at, forget)
        watchers.add(watcher)
        if self._closed:
            watcher.end()
        return watcher

    def count(self) -> int:
        """How many watchers are subscribed."""
        return sum(len(watchers) for watchers in self._watchers.values())

    def close(self) -> None:
        """End every watcher, and every later one at once."""
        self._closed = True
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.end()

    def publish(self, applied: Applied) -> None:
        """Tell the watchers of ``applied.namespace`` about one write."""
        watchers = self._watchers.get(applied.namespace)
        if not watchers:
            return
        made: dict[Path, tuple[Change, int] | None] = {}  # one rendering per changed path
        for watcher in list(watchers):
            at = watcher.at
            if applied.at[: len(at)] == at:  # the write is at or under the watched path
                key = applied.at
            elif at[: len(applied.at)] == applied.at:  # the write is above it
                key = at
            else:
                continue
            if key not in made:
                made[key] = _change(applied, key)
            found = made[key]
            if found is not None:
                watcher.push(*found)


def _change(applied: Applied, at: Path) -> tuple[Change, int] | None:
    """The change ``applied`` makes at ``at`` (``None`` if it makes none there)."""
    found, node = lookup(applied.new, at)
    if at != applied.at:  # an ancestor was written: did it change this subtree?
        was, old = lookup(applied.old, at)
        if was == found and (not found or same(old, node)):
            return None
    value: Any = render(node, at, None) if found else None
    change = Change(join(at), value, deleted=not found, version=applied.version)
    return change, size_of(change)


def size_of(change: Change) -> int:
    """About how many bytes ``change`` holds (its value's JSON, plus the rest)."""
    return len(_json.encode(change.value)) + len(change.path) + 32
