"""Events in memory: complete and deterministic, gone when the process ends.

Every record stays in its topic's tail until retention removes it; nothing is persisted.
Opens on first use; :meth:`MemoryEvents.close` stops consumers and the background upkeep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from . import MAX_BODY, Retention
from ._engine import LogEngine
from ._log import Record, Tail, TopicState
from ._options import Options

__all__ = ["MemoryEvents"]


class MemoryEvents(LogEngine):
    """An in-process events backend.

    ``clock`` gives wall-clock seconds (tests pass a fake one); ``poll_interval`` is how
    often, in real seconds, waiting consumers and the upkeep re-read it (tests use 0.01);
    ``purge_interval`` how often retention runs by itself (or call :meth:`purge`).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY,
        dedupe_window: float = 120.0,
        retention: Retention | None = None,
        poll_interval: float = 1.0,
        purge_interval: float = 60.0,
    ) -> None:
        super().__init__(
            clock,
            Options(
                max_body=max_body,
                dedupe_window=dedupe_window,
                retention=retention or Retention(),
                poll_interval=poll_interval,
                purge_interval=purge_interval,
            ),
        )

    def _new_tail(self) -> Tail:
        return Tail()

    async def _open(self) -> None:
        return None

    def _write(self, state: TopicState, record: Record) -> asyncio.Future[Record]:
        record.seq = state.last_seq + 1
        self._committed(state, record)
        future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        future.set_result(record)
        return future

    async def _load(self, state: TopicState, seq: int, limit: int) -> list[Record]:
        return state.tail.since(seq, limit)

    async def _seq_at_stored(self, state: TopicState, ts: float) -> int | None:
        return state.tail.seq_at(ts)

    async def _bytes_through_stored(self, state: TopicState, excess: int) -> int | None:
        return state.tail.bytes_through(excess)

    async def _delete_through(self, state: TopicState, through: int) -> tuple[int, int]:
        return state.tail.drop_through(through)
