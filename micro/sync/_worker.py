"""One thread that owns the SQLite connection and runs jobs in batches (group commit).

sqlite3 blocks, so no job runs on the event loop. The thread takes every job waiting (up to
``max_batch``) and runs them in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction: one
fsync for the batch. Each job runs inside a savepoint, so a job that raises (a conflict) is
rolled back alone. If the transaction itself fails, every job of the batch fails and
nothing of it is kept. Results go back to the loop with one ``call_soon_threadsafe`` per
batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from ..errors import MicroError, internal, unavailable
from . import ID

__all__ = ["Writer"]

log = logging.getLogger("micro.sync")

Job = Callable[[sqlite3.Connection], Any]
_Item = tuple[Job, "asyncio.Future[Any]"]
_Result = tuple["asyncio.Future[Any]", bool, Any]


def _error(exc: BaseException) -> MicroError:
    if isinstance(exc, MicroError):
        return exc
    return internal(ID, f"sync database failed: {type(exc).__name__}: {exc}")


def _deliver(results: list[_Result]) -> None:
    for fut, ok, value in results:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Writer:
    """The database thread: ``submit`` a job, await its future."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._connect = connect
        self._loop = loop
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed: MicroError | None = None
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="micro-sync-db", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> asyncio.Future[Any]:
        """Queue ``job``; the future settles with its result or error."""
        fut = self._loop.create_future()
        with self._lock:
            if (why := self._closed) is not None:
                raise MicroError(why.id, why.code, why.detail, why.status)
            self._queue.put((job, fut))
        return fut

    async def close(self, timeout: float = 30.0) -> None:
        """Finish queued jobs, close the connection, end the thread."""
        with self._lock:
            if self._closed is None:
                self._closed = unavailable(ID, "the sync database is closed")
                self._queue.put(None)
        await asyncio.to_thread(self._thread.join, timeout)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._fail_all(_error(exc))
            return
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < 512:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                results = self._batch(conn, batch)
                self.batches += 1
                self._post(results)
        finally:
            conn.close()
            self._fail_all(unavailable(ID, "the sync database is closed"))

    def _post(self, results: list[_Result]) -> None:
        try:
            self._loop.call_soon_threadsafe(_deliver, results)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _fail_all(self, err: MicroError) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = err
        results: list[_Result] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                results.append((item[1], False, err))
        if results:
            self._post(results)

    def _batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Result]:
        results: list[_Result] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, fut in batch:
                conn.execute("SAVEPOINT job")
                try:
                    results.append((fut, True, job(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    results.append((fut, False, _error(exc)))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except Exception as exc:
            err = _error(exc)
            log.error("sync: a batch of %d jobs failed: %s", len(batch), err.detail)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("sync: rollback failed")
            return [(fut, False, err) for _, fut in batch]
        return results
