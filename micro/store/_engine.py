"""What runs behind a :class:`~micro.store.sqlite.SqliteStore`: the lock file, the writer
and reader threads over one SQLite file, and the version counter."""

from __future__ import annotations

import asyncio
import fcntl
import functools
from pathlib import Path
from typing import IO, Any

from .._sqlite_worker import After, Job, Worker
from ..errors import MicroError, conflict, internal, unavailable
from . import _sql as sql
from ._validate import ID

__all__ = ["Engine"]

def _lock(path: Path) -> IO[bytes]:
    """Hold ``path`` (a lock file) exclusively; ``conflict`` if another store does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # held open until the engine closes
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise conflict(ID, f"another store is using {path.with_suffix('')} (lock {path})") from None
    return handle


class Engine:
    """The store file at ``path`` with one writer thread and ``readers`` reader threads."""

    def __init__(self, path: Path, *, readers: int, max_batch: int) -> None:
        self.path = path
        self.versions = sql.Versions()
        self._reader_count = readers
        self._max_batch = max_batch
        self._lock: IO[bytes] | None = None
        self._writer: Worker | None = None
        self._readers: list[Worker] = []
        self._next = 0

    @property
    def lock_path(self) -> Path:
        """The lock file beside the database."""
        return self.path.with_name(self.path.name + ".lock")

    async def open(self) -> None:
        """Take the lock, create or open the file, start the threads."""
        loop = asyncio.get_running_loop()
        path = str(self.path)
        try:
            self._lock = await asyncio.to_thread(_lock, self.lock_path)
            writer = Worker(
                "store-writer", functools.partial(sql.connect, path, writer=True), loop,
                block=ID, writer=True, max_batch=self._max_batch,
            )
            writer.before_commit = self.versions.save
            self._writer = writer
            await writer.submit(functools.partial(sql.init, self.versions))
        except (OSError, MicroError) as exc:
            await self.close()
            if isinstance(exc, MicroError) and exc.code == "conflict":
                raise
            detail = exc.detail if isinstance(exc, MicroError) else str(exc)
            raise internal(ID, f"cannot open store {path}: {detail}") from exc
        self._readers = [
            Worker(
                f"store-reader-{i}", functools.partial(sql.connect, path, writer=False), loop,
                block=ID, writer=False, max_batch=self._max_batch,
            )
            for i in range(self._reader_count)
        ]

    def write(self, job: Job, after: After | None = None) -> asyncio.Future[Any]:
        """Run ``job`` in the writer's next batch (group commit)."""
        if self._writer is None:
            raise unavailable(ID, "the store is not open")
        return self._writer.submit(job, after)

    def read(self, job: Job, after: After | None = None) -> asyncio.Future[Any]:
        """Run ``job`` on a reader thread (round robin)."""
        readers = self._readers
        if not readers:
            raise unavailable(ID, "the store is not open")
        self._next = (self._next + 1) % len(readers)
        return readers[self._next].submit(job, after)

    async def close(self) -> None:
        """Finish queued jobs, stop the threads, release the lock."""
        workers = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers, self._writer = [], None
        for worker in workers:
            await worker.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
