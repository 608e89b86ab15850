"""The writer thread of the SQLite log: every write goes through it, in order, and writes
queued while a commit is running share the next transaction (group commit: one fsync for
many publishes).

Operations are queued from the event loop; the thread takes the first, drains whatever
else is queued (up to a bound), runs them all in one transaction and commits. Outcomes go
back to the loop in one callback per batch, in queue order, so publishes become visible in
sequence order. A failed transaction fails every operation in it and rolls back the
sequences it had given out, so the log never has gaps.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import internal
from . import Retention
from ._log import Record, TopicState
from ._options import ID
from ._sqlite_schema import SCHEMA, connect, encode_metadata, load

__all__ = ["Append", "EnsureTopic", "Op", "Purge", "Statement", "Writer", "retention_json"]

log = logging.getLogger("micro.events")

MAX_BATCH = 4096
MAX_BATCH_BYTES = 16 * 1024 * 1024
_retention_encoder = msgspec.json.Encoder()


class Op(abc.ABC):
    """One write. :meth:`run` executes in the writer thread; :meth:`finish` on the loop."""

    size = 0

    @abc.abstractmethod
    def run(self, conn: sqlite3.Connection, writer: Writer) -> Any:
        """Execute inside the batch's transaction; return the outcome."""
        ...

    def finish(self, result: Any, error: BaseException | None) -> None:
        """On the loop, after the batch committed (``error`` None) or failed."""


class Statement(Op):
    """A fire-and-forget statement (group state, retention, topic rows)."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql = sql
        self.params = params

    def run(self, conn: sqlite3.Connection, writer: Writer) -> Any:
        conn.execute(self.sql, self.params)
        return None

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            log.warning("events: could not persist group state (%s); redelivery follows", error)


class EnsureTopic(Op):
    """Create a topic's row if it has none (a group or a retention may come first)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, conn: sqlite3.Connection, writer: Writer) -> Any:
        writer.topic(conn, self.name)
        return None


class Append(Op):
    """Append a record to a topic, numbering it; the future gets the record once durable."""

    __slots__ = ("commit", "future", "record", "state")

    def __init__(
        self,
        state: TopicState,
        record: Record,
        future: asyncio.Future[Record],
        commit: Callable[[TopicState, Record], None],
    ) -> None:
        self.state = state
        self.record = record
        self.future = future
        self.commit = commit
        self.size = len(record.body)

    def run(self, conn: sqlite3.Connection, writer: Writer) -> Any:
        record = self.record
        name = self.state.name
        seq = writer.topic(conn, name) + 1
        conn.execute(
            "INSERT INTO events (topic, seq, ts, deliver_at, key, message_id, metadata, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                seq,
                record.ts,
                record.deliver_at,
                record.key,
                record.message_id,
                encode_metadata(record.metadata),
                record.body,
            ),
        )
        writer.appended(name, seq, len(record.body))
        return seq

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is None:
            self.record.seq = result
            self.commit(self.state, self.record)
            if not self.future.done():
                self.future.set_result(self.record)
        elif not self.future.done():
            self.future.set_exception(error)


class Purge(Op):
    """Delete a topic's records up to a sequence; the future gets ``(count, bytes)``."""

    __slots__ = ("future", "through", "topic")

    def __init__(self, topic: str, through: int, future: asyncio.Future[tuple[int, int]]) -> None:
        self.topic = topic
        self.through = through
        self.future = future

    def run(self, conn: sqlite3.Connection, writer: Writer) -> Any:
        count, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM events "
            "WHERE topic = ? AND seq <= ?",
            (self.topic, self.through),
        ).fetchone()
        conn.execute("DELETE FROM events WHERE topic = ? AND seq <= ?", (self.topic, self.through))
        conn.execute("DELETE FROM pending WHERE topic = ? AND seq <= ?", (self.topic, self.through))
        conn.execute(
            "UPDATE topics SET count = count - ?, bytes = bytes - ? WHERE name = ?",
            (count, size, self.topic),
        )
        return (int(count), int(size))

    def finish(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


class Writer:
    """The thread that owns the write connection."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.loop = loop
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._last: dict[str, int] = {}
        self._batch_topics: dict[str, list[int]] = {}  # name -> [last_seq, added, bytes]
        self.commits = 0  # transactions committed (one fsync each)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="micro-events-writer", daemon=True)

    def start(self) -> None:
        """Open the connection, create the schema; raises what opening raised."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, op: Op) -> None:
        """Queue ``op`` (from the loop)."""
        self._queue.put(op)

    def stop(self) -> None:
        """Finish queued operations and end the thread (blocking: run it in a thread)."""
        self._queue.put(None)
        self._thread.join()

    # -- in the thread -------------------------------------------------------------------

    def topic(self, conn: sqlite3.Connection, name: str) -> int:
        """The last sequence of ``name`` (creating the topic row on first sight)."""
        pending = self._batch_topics.get(name)
        if pending is not None:
            return pending[0]
        last = self._last.get(name)
        if last is None:
            conn.execute("INSERT OR IGNORE INTO topics (name) VALUES (?)", (name,))
            last = self._last[name] = 0
        return last

    def appended(self, name: str, seq: int, size: int) -> None:
        """Count an append of this batch."""
        entry = self._batch_topics.setdefault(name, [seq, 0, 0])
        entry[0] = seq
        entry[1] += 1
        entry[2] += size

    def _run(self) -> None:
        try:
            conn = connect(self.path)
            conn.executescript(SCHEMA)
            self._last = load(conn)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                op = self._queue.get()
                if op is None:
                    return
                batch, size, stop = [op], op.size, False
                while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                    size += more.size
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[Op]) -> None:
        results: list[Any] = []
        error: BaseException | None = None
        self._batch_topics.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                results.append(op.run(conn, self))
            for name, (last, added, size) in self._batch_topics.items():
                conn.execute(
                    "UPDATE topics SET last_seq = ?, count = count + ?, bytes = bytes + ? "
                    "WHERE name = ?",
                    (last, added, size, name),
                )
            conn.execute("COMMIT")
            self.commits += 1
        except (sqlite3.Error, OSError) as exc:
            error = internal(ID, f"cannot write the events log {self.path}: {exc}")
            error.__cause__ = exc
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._last = load(conn)  # forget sequences and topics of the failed batch
            except sqlite3.Error:
                log.exception("events: rollback failed")
        else:
            for name, (last, _, _) in self._batch_topics.items():
                self._last[name] = last
        self._batch_topics.clear()
        try:
            self.loop.call_soon_threadsafe(_finish, batch, results, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _finish(batch: list[Op], results: list[Any], error: BaseException | None) -> None:
    for index, op in enumerate(batch):
        try:
            op.finish(results[index] if error is None else None, error)
        except Exception:
            log.exception("events: finishing a write failed")


def retention_json(retention: Retention) -> str:
    """A retention as stored."""
    return _retention_encoder.encode(retention).decode()
