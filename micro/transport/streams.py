"""An inbound stream of messages: what a streaming handler or caller iterates over."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["InboundStream"]

T = TypeVar("T")

_HIGH_WATER = 256
_LOW_WATER = 64


class InboundStream(Generic[T]):
    """Messages received for one call, iterated with ``async for``.

    The connection feeds it with :meth:`put`, :meth:`end` and :meth:`fail`. When more than a
    few hundred messages wait unread, ``on_pressure(True)`` asks the connection to stop
    reading from the socket; ``on_pressure(False)`` lets it go on once the reader catches up.
    """

    __slots__ = ("_done", "_error", "_items", "_on_pressure", "_pressured", "_waiter", "decode")

    def __init__(
        self,
        decode: Callable[[bytes], T],
        on_pressure: Callable[[bool], None] | None = None,
    ) -> None:
        self.decode = decode
        self._items: deque[bytes] = deque()
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_pressure = on_pressure
        self._pressured = False

    def put(self, body: bytes) -> None:
        """A message arrived."""
        if self._done:
            return
        self._items.append(body)
        if (
            not self._pressured
            and self._on_pressure is not None
            and len(self._items) >= _HIGH_WATER
        ):
            self._pressured = True
            self._on_pressure(True)
        self._wake()

    def end(self) -> None:
        """The sender will send no more."""
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The stream broke; iteration raises ``exc`` after the queued messages."""
        if not self._done:
            self._error = exc
            self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> InboundStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        body = self._items.popleft()
        if self._pressured and len(self._items) <= _LOW_WATER and self._on_pressure is not None:
            self._pressured = False
            self._on_pressure(False)
        return self.decode(body)

    async def receive(self) -> T:
        """The next message; raises ``StopAsyncIteration`` at the end of the stream."""
        return await self.__anext__()

    def release(self) -> None:
        """Drop unread messages and lift any read pause (the call is over)."""
        self._items.clear()
        if self._pressured and self._on_pressure is not None:
            self._pressured = False
            self._on_pressure(False)
