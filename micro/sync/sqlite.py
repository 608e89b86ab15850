"""The durable sync backend: one SQLite file in WAL mode with ``synchronous=FULL``.

Every operation (reads too) runs on one database thread (:mod:`micro._sqlite_worker`);
concurrent calls are grouped into one transaction, one fsync. An acknowledged call
survives ``kill -9``. Each lock's last fencing token stays in the ``locks`` table after
release, so tokens never go back, even across restarts.

Lifecycle: ``SqliteSync(path, clock=...)``; ``await start()`` opens the file (the first call
does it too), ``await close()`` finishes queued work and closes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._sqlite_worker import Worker
from ..errors import internal
from . import ID
from ._base import LocalSync
from ._tables import LockRow, Tables, TaskRow

__all__ = ["SqliteSync"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, token INTEGER NOT NULL, owner TEXT, expires REAL);
CREATE TABLE IF NOT EXISTS maps (
    map TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (map, key));
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body BLOB NOT NULL,
    max_attempts INTEGER NOT NULL, due REAL NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, worker TEXT NOT NULL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (queue, state, due, id);
"""

_TASK_COLUMNS = "id, queue, body, max_attempts, due, state, attempts, worker, error"


def _task(row: Any) -> TaskRow | None:
    """A ``tasks`` row (columns in ``_TASK_COLUMNS`` order) as a :class:`TaskRow`."""
    if row is None:
        return None
    id, queue, body, most, due, state, attempts, worker, error = row
    return TaskRow(id, queue, bytes(body), most, due, state, attempts, worker, error)


class SqliteTables:
    """:class:`~micro.sync._tables.Tables` on a connection (inside the worker's transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn

    def lock_get(self, name: str) -> LockRow | None:
        row = self.c.execute(
            "SELECT token, owner, expires FROM locks WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else LockRow(row[0], row[1], row[2])

    def lock_put(self, name: str, row: LockRow) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO locks (name, token, owner, expires) VALUES (?, ?, ?, ?)",
            (name, row.token, row.owner, row.expires),
        )

    def map_get(self, map: str, key: str) -> tuple[bytes, int] | None:
        row = self.c.execute(
            "SELECT value, version FROM maps WHERE map = ? AND key = ?", (map, key)
        ).fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def map_put(self, map: str, key: str, value: bytes, version: int) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO maps (map, key, value, version) VALUES (?, ?, ?, ?)",
            (map, key, value, version),
        )

    def map_delete(self, map: str, key: str) -> None:
        self.c.execute("DELETE FROM maps WHERE map = ? AND key = ?", (map, key))

    def map_list(self, map: str) -> list[tuple[str, bytes, int]]:
        rows = self.c.execute(
            "SELECT key, value, version FROM maps WHERE map = ? ORDER BY key", (map,)
        ).fetchall()
        return [(str(k), bytes(v), int(n)) for k, v, n in rows]

    def task_insert(self, row: TaskRow) -> int:
        cur = self.c.execute(
            f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.queue,
                row.body,
                row.max_attempts,
                row.due,
                row.state,
                row.attempts,
                row.worker,
                row.error,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def task_update(self, row: TaskRow) -> None:
        self.c.execute(
            "UPDATE tasks SET due = ?, state = ?, attempts = ?, worker = ?, error = ? WHERE id = ?",
            (row.due, row.state, row.attempts, row.worker, row.error, row.id),
        )

    def task_get(self, id: int) -> TaskRow | None:
        return _task(
            self.c.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (id,)).fetchone()
        )

    def task_delete(self, id: int) -> None:
        self.c.execute("DELETE FROM tasks WHERE id = ?", (id,))

    def task_next(self, queue: str, now: float) -> TaskRow | None:
        return _task(
            self.c.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE queue = ? AND state != 'dead' "
                "AND due <= ? ORDER BY due, id LIMIT 1",
                (queue, now),
            ).fetchone()
        )

    def task_dead(self, queue: str) -> list[TaskRow]:
        rows = self.c.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE queue = ? AND state = 'dead' ORDER BY id",
            (queue,),
        ).fetchall()
        return [r for r in map(_task, rows) if r is not None]


class SqliteSync(LocalSync):
    """Locks, elections, maps and queues in the SQLite file at ``path``."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._writer: Worker | None = None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        return conn

    async def start(self) -> None:
        """Open the database (idempotent; the first call does it too)."""
        if self._writer is None:
            await self._run(lambda t: None)

    async def _run(self, fn: Callable[[Tables], T]) -> T:
        if self._writer is None:
            self._writer = Worker(
                "micro-sync-db", self._connect, asyncio.get_running_loop(), block=ID, writer=True
            )
        try:
            result: T = await self._writer.submit(lambda conn: fn(SqliteTables(conn)))
        except (sqlite3.Error, OSError) as exc:
            raise internal(ID, f"sync database {self.path}: {exc}") from exc
        return result

    async def close(self) -> None:
        """End observers, finish queued work and close the database."""
        await super().close()
        if self._writer is not None:
            await self._writer.close()
