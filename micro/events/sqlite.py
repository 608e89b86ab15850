"""Events in SQLite: the durable log ``micro server`` hosts.

One database file (WAL mode, ``synchronous=FULL``) holds topics, events, groups and each
group's unsettled events. Writes go through one thread with group commit: publishes that
arrive while a commit is running share the next transaction, so many publishes cost one
fsync, and a publish is acknowledged only after its transaction is fsynced. Reads that
miss the in-memory tail of a topic (its newest ``cache_events`` records) run in a reader
thread on a second connection; the event loop never blocks on SQLite.

Group state (cursor, deliveries, nack delays) is written in the same queue without
waiting for the fsync: after a crash a group may see an event again (at-least-once), never
lose one. Events that were in flight when the process stopped are delivered again at once
after a restart.

Opens on first use or :meth:`SqliteEvents.start`; :meth:`SqliteEvents.close` finishes
queued writes and closes the database. A lock file beside the database keeps a second
process from opening it (``conflict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import conflict, internal, unavailable
from . import MAX_BODY, Retention
from ._engine import LogEngine
from ._group import Group
from ._log import Dedupe, Record, Tail, TopicState
from ._options import ID, Options
from ._sqlite_schema import (
    Snapshot,
    bytes_through,
    connect,
    read_records,
    seq_at,
    snapshot,
)
from ._sqlite_writer import Append, EnsureTopic, Purge, Statement, Writer, retention_json

__all__ = ["SqliteEvents"]

T = TypeVar("T")


class SqliteEvents(LogEngine):
    """A durable events backend in the SQLite file ``path``.

    ``clock``, ``poll_interval`` and ``purge_interval`` as for
    :class:`~micro.events.memory.MemoryEvents`; ``cache_events`` and ``cache_bytes`` bound
    the newest records kept in memory per topic for consumers that keep up.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY,
        dedupe_window: float = 120.0,
        retention: Retention | None = None,
        poll_interval: float = 1.0,
        purge_interval: float = 60.0,
        cache_events: int = 10_000,
        cache_bytes: int = 16 * 1024 * 1024,
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
        if cache_events < 1 or cache_bytes < 1:
            raise ValueError("cache_events and cache_bytes must be positive")
        self.path = Path(path)
        self._cache = (cache_events, cache_bytes)
        self._writer: Writer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None

    @property
    def commits(self) -> int:
        """Transactions committed since :meth:`start`, one fsync each (publishes that
        arrive together share one)."""
        return self._writer.commits if self._writer is not None else 0

    def _new_tail(self) -> Tail:
        return Tail(*self._cache)

    # -- opening and closing -------------------------------------------------------------

    async def _open(self) -> None:
        self._take_lock()
        loop = asyncio.get_running_loop()
        try:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="micro-events-reader")
            writer = Writer(self.path, loop)
            await self._blocking(writer.start)
            self._writer = writer
            self._conn = await self._in_reader(connect, self.path)
            since = self.clock() - self.options.dedupe_window
            self._restore(await self._query(snapshot, since))
        except BaseException:
            await self._close_storage()
            raise

    def _take_lock(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_name(self.path.name + ".lock"), "ab")
        except OSError as exc:
            raise internal(ID, f"cannot open the events log {self.path}: {exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise conflict(ID, f"{self.path} is open in another process") from None
        self._lock = handle

    def _restore(self, snap: Snapshot) -> None:
        now = self.clock()
        for row in snap.topics:
            state = self._topics[row.name] = TopicState(row.name, self._new_tail())
            state.last_seq, state.first_seq = row.last_seq, row.first_seq
            state.count, state.bytes = row.count, row.bytes
            state.last_ts, state.retention = row.last_ts, row.retention
        for group_row in snap.groups:
            state = self._topic(group_row.topic)
            group = state.groups[group_row.name] = Group(
                self, state, group_row.name, group_row.cursor
            )
            for pending in group_row.pending:
                group.restore(pending.seq, pending.deliveries, pending.due, pending.key)
            group.settle_restore(now)
        for topic, message_id, seq, ts in snap.ids:
            self._topic(topic).dedupe[message_id] = Dedupe(ts, seq)

    async def _close_storage(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await self._blocking(writer.stop)
        conn, self._conn = self._conn, None
        if conn is not None and self._reader is not None:
            with contextlib.suppress(Exception):
                await self._in_reader(conn.close)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.shutdown(wait=False)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- threads -------------------------------------------------------------------------

    async def _blocking(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(func, *args)
        except (sqlite3.Error, OSError) as exc:
            raise internal(ID, f"events log {self.path}: {exc}") from exc

    async def _in_reader(self, func: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise unavailable(ID, "the events log is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, func, *args)
        except (sqlite3.Error, OSError) as exc:
            raise internal(ID, f"cannot read the events log {self.path}: {exc}") from exc

    def _submit_statement(self, sql: str, *params: Any) -> None:
        if self._writer is not None:
            self._writer.submit(Statement(sql, params))

    # -- storage hooks -------------------------------------------------------------------

    def _writer_or_closed(self) -> Writer:
        if self._writer is None:
            raise unavailable(ID, "the events log is closed")
        return self._writer

    def _write(self, state: TopicState, record: Record) -> asyncio.Future[Record]:
        future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._writer_or_closed().submit(Append(state, record, future, self._committed))
        return future

    async def _query(self, func: Callable[..., T], *args: Any) -> T:
        """``func(connection, *args)`` on the reader's connection."""
        if self._conn is None:
            raise unavailable(ID, "the events log is closed")
        return await self._in_reader(func, self._conn, *args)

    async def _load(self, state: TopicState, seq: int, limit: int) -> list[Record]:
        return await self._query(read_records, state.name, seq, limit)

    async def _seq_at_stored(self, state: TopicState, ts: float) -> int | None:
        return await self._query(seq_at, state.name, ts)

    async def _bytes_through_stored(self, state: TopicState, excess: int) -> int | None:
        return await self._query(bytes_through, state.name, excess)

    async def _delete_through(self, state: TopicState, through: int) -> tuple[int, int]:
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._writer_or_closed().submit(Purge(state.name, through, future))
        result = await future
        state.tail.drop_through(through)
        return result

    def _persist_topic(self, topic: str) -> None:
        if self._writer is not None:
            self._writer.submit(EnsureTopic(topic))

    def _persist_retention(self, topic: str, retention: Retention) -> None:
        self._submit_statement(
            "UPDATE topics SET retention = ? WHERE name = ?", retention_json(retention), topic
        )

    def _persist_group(self, topic: str, group: str, cursor: int) -> None:
        self._submit_statement(
            "INSERT OR IGNORE INTO groups (topic, name, cursor) VALUES (?, ?, ?)",
            topic,
            group,
            cursor,
        )

    def persist_cursor(self, topic: str, group: str, cursor: int) -> None:
        """Record a group's cursor."""
        self._submit_statement(
            "UPDATE groups SET cursor = ? WHERE topic = ? AND name = ?", cursor, topic, group
        )

    def persist_pending(
        self, topic: str, group: str, seq: int, deliveries: int, due: float | None
    ) -> None:
        """Record an unsettled event."""
        self._submit_statement(
            "INSERT OR REPLACE INTO pending (topic, grp, seq, deliveries, due) "
            "VALUES (?, ?, ?, ?, ?)",
            topic,
            group,
            seq,
            deliveries,
            due,
        )

    def persist_settled(self, topic: str, group: str, seq: int) -> None:
        """Forget an unsettled event."""
        self._submit_statement(
            "DELETE FROM pending WHERE topic = ? AND grp = ? AND seq = ?", topic, group, seq
        )
