"""Threads that own a SQLite connection and run jobs for the event loop in batches.

Shared by the SQLite backends (the store's writer and readers, sync's writer). sqlite3
blocks, so a backend never calls it on the event loop. A :class:`Worker` is one thread with
one connection and a queue of jobs. It takes every job waiting (up to ``max_batch``), runs
them, and hands all the results back to the loop with one ``call_soon_threadsafe``, so a
busy backend pays the thread switch once per batch, not once per call.

A *writer* runs each batch in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): group
commit, one fsync for every write in the batch. Each job runs inside a savepoint, so a job
that fails (a conflict) is rolled back alone; if the transaction itself fails (I/O error,
disk full) every job of the batch fails and nothing of it is kept. *Readers* run a batch
inside one read transaction, a consistent snapshot that already holds every write
acknowledged before the batch began.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from .errors import MicroError, internal, unavailable

__all__ = ["After", "Job", "Worker"]

log = logging.getLogger("micro.sqlite")

Job = Callable[[sqlite3.Connection], Any]
"""Work for a connection; runs in the worker thread; may raise :class:`MicroError`."""

After = Callable[[Any], Any]
"""Runs on the loop with a job's result, before its future settles (even when the future
was cancelled: a write that committed must be accounted for); returns the final result."""

_Item = tuple[Job, "asyncio.Future[Any]", After | None]
_Result = tuple["asyncio.Future[Any]", bool, Any, After | None]  # ok: value, else exception


def _deliver(block: str, results: list[_Result]) -> None:
    """On the loop: settle the futures of one batch."""
    for fut, ok, value, after in results:
        if ok and after is not None:
            try:
                value = after(value)
            except Exception as exc:
                ok, value = False, _error(exc, block, "finishing a job")
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _error(exc: BaseException, block: str, what: str) -> MicroError:
    if isinstance(exc, MicroError):
        return exc
    return internal(block, f"{what} failed: {type(exc).__name__}: {exc}")


class Worker:
    """One thread, one connection (made by ``connect`` in the thread), batches of jobs.
    ``block`` (``store``, ``sync``) names the errors and log lines."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        *,
        block: str,
        writer: bool,
        max_batch: int = 512,
    ) -> None:
        self.block = block
        self._connect = connect
        self._loop = loop
        self._writer = writer
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submit() against the thread ending
        self._closed: MicroError | None = None  # why jobs are refused, once they are
        self.before_commit: Callable[[sqlite3.Connection], None] | None = None
        self.batches = 0  # batches run so far (a writer: transactions committed or failed)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, after: After | None = None) -> asyncio.Future[Any]:
        """Queue ``job``; the future settles with its result (passed through ``after``) or
        its error."""
        fut = self._loop.create_future()
        with self._lock:
            if (why := self._closed) is not None:
                raise MicroError(why.id, why.code, why.detail, why.status)
            self._queue.put((job, fut, after))
        return fut

    async def close(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, close the connection, end the thread."""
        with self._lock:
            if self._closed is None:
                self._closed = unavailable(self.block, f"the {self.block} database is closed")
                self._queue.put(None)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.error("%s: %s did not stop within %.0f s", self.block, self._thread.name, timeout)

    # -- in the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._fail_all(_error(exc, self.block, f"opening the {self.block} database"))
            return
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                stopping = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                results = self._write(conn, batch) if self._writer else self._read(conn, batch)
                self.batches += 1
                self._post(results)
                if stopping:
                    break
        finally:
            conn.close()
            self._fail_all(unavailable(self.block, f"the {self.block} database is closed"))

    def _post(self, results: list[_Result]) -> None:
        try:
            self._loop.call_soon_threadsafe(_deliver, self.block, results)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _fail_all(self, err: MicroError) -> None:
        """Refuse new jobs and fail those still queued (the connection failed or closed)."""
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
                results.append((item[1], False, err, None))
        if results:
            self._post(results)

    def _read(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Result]:
        results: list[_Result] = []
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            err = _error(exc, self.block, "reading")
            return [(fut, False, err, None) for _, fut, _ in batch]
        for job, fut, after in batch:
            try:
                results.append((fut, True, job(conn), after))
            except Exception as exc:
                results.append((fut, False, _error(exc, self.block, "reading"), None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("%s: ending a read transaction failed", self.block)
        return results

    def _write(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Result]:
        results: list[_Result] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, fut, after in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job(conn)
                except Exception as exc:
                    # raises when SQLite already rolled the whole transaction back: then
                    # the batch fails below
                    conn.execute("ROLLBACK TO job")
                    results.append((fut, False, _error(exc, self.block, "writing"), None))
                else:
                    results.append((fut, True, value, after))
                conn.execute("RELEASE job")
            if self.before_commit is not None:
                self.before_commit(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            err = _error(exc, self.block, "writing")
            log.error("%s: a batch of %d writes failed: %s", self.block, len(batch), err.detail)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("%s: rollback failed", self.block)
            return [(fut, False, err, None) for _, fut, _ in batch]
        return results
