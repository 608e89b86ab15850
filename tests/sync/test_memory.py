"""Memory backend specifics: closing ends observe() streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

from micro.sync.memory import MemorySync


async def test_close_ends_observers() -> None:
    sync = MemorySync()
    seen = [leader async for leader in _first_then_close(sync)]
    assert seen == [None]


async def _first_then_close(sync: MemorySync) -> AsyncIterator[str | None]:
    async for leader in sync.observe("db"):
        yield leader
        await sync.close()
