"""The SQLite writer thread: applies writes in order, many per transaction (group commit).

Writes queue up while the previous transaction commits; the thread then applies all of them
to its documents, upserts each touched namespace once and commits: one fsync for the lot.
Results go back to the event loop in one callback per batch, in order, so the loop updates
its read cache and tells watchers in version order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MicroError, internal
from ._paths import Path
from ._state import Applied, Documents
from ._tree import Tree, decode_tree
from .keys import Cipher

__all__ = ["SCHEMA", "Op", "Outcome", "Writer", "connect", "read_document"]

log = logging.getLogger("micro.config")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    document BLOB NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO documents (namespace, version, document, updated) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (namespace) DO UPDATE SET version = excluded.version, "
    "document = excluded.document, updated = excluded.updated"
)
_BATCH = 512


@dataclass(slots=True)
class Op:
    """A write waiting for the thread: ``value`` is ``None`` for deletes."""

    namespace: str
    at: Path
    delete: bool
    value: Any = None
    secret: bool = False
    future: asyncio.Future[None] | None = field(default=None, repr=False)


Outcome = Applied | MicroError | None  # None: a delete that found nothing
Deliver = Callable[[list[tuple[Op, Outcome]]], None]


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def read_document(conn: sqlite3.Connection, namespace: str) -> tuple[Tree, int]:
    """The stored tree and version of ``namespace`` (empty at version 0 when absent)."""
    row = conn.execute(
        "SELECT document, version FROM documents WHERE namespace = ?", (namespace,)
    ).fetchone()
    if row is None:
        return {}, 0
    return decode_tree(row[0]), int(row[1])


class Writer:
    """Owns the write connection and the authoritative documents; runs in its own thread."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        cipher: Cipher,
        deliver: Deliver,
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self._docs = Documents(cipher, lambda namespace: read_document(conn, namespace))
        self._deliver = deliver
        self._clock = clock
        self._ops: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="micro-config-writer", daemon=True)
        self._thread.start()

    def submit(self, op: Op) -> None:
        """Queue ``op``; its future gets the outcome."""
        self._ops.put(op)

    def stop(self) -> None:
        """Finish queued writes, close the connection, end the thread (blocks: run it in a
        thread)."""
        self._ops.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._ops.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        op = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stopping = True
                        break
                    batch.append(op)
                results = self._apply(batch)
                try:
                    self._deliver(results)
                except RuntimeError:  # the event loop is closed: nobody waits any more
                    log.debug("config writer: results of %d writes undelivered", len(results))
        finally:
            self._conn.close()

    def _apply(self, batch: list[Op]) -> list[tuple[Op, Outcome]]:
        saved: dict[str, tuple[Tree, int]] = {}
        results: list[tuple[Op, Outcome]] = []
        touched: dict[str, Applied] = {}
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for op in batch:
                    if op.namespace not in saved:
                        saved[op.namespace] = self._docs.current(op.namespace)
                    outcome = self._one(op)
                    results.append((op, outcome))
                    if isinstance(outcome, Applied):
                        touched[op.namespace] = outcome
                now = self._clock()
                self._conn.executemany(
                    _UPSERT, [(a.namespace, a.version, a.stored, now) for a in touched.values()]
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            for namespace, doc in saved.items():
                self._docs.restore(namespace, doc)
            if not isinstance(exc, (sqlite3.Error, OSError)):
                log.error("config writer failed", exc_info=exc)
            err = internal("config", f"cannot write the config database: {exc}")
            return [(op, err) for op in batch]
        return results

    def _one(self, op: Op) -> Outcome:
        try:
            if op.delete:
                return self._docs.delete(op.namespace, op.at)
            return self._docs.set(op.namespace, op.at, op.value, op.secret)
        except MicroError as err:
            return err
