"""The durable config backend: one SQLite file in WAL mode, what ``micro server`` runs.

Each namespace is one row (its version and its document, stored as msgpack with secret leaves
encrypted). Writes go to a writer thread that commits them in groups with
``synchronous=FULL``: when ``set`` returns, the write survives a crash or ``kill -9``. Reads
come from an in-memory copy of each namespace, loaded on first use by a reader thread and
kept current by the writer, so the event loop never waits on the disk. One process owns the
file at a time.

The database opens on first use, or with :meth:`SqliteConfig.start` to fail early;
:meth:`SqliteConfig.close` finishes queued writes and closes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from ..errors import MicroError, internal, unavailable
from . import Change
from ._paths import check_namespace, normalize, split_path
from ._state import Applied, render_at
from ._tree import Tree
from ._watch import Hub
from ._writer import SCHEMA, Op, Outcome, Writer, connect, read_document
from .keys import Cipher

__all__ = ["SqliteConfig"]

_FORMAT = 1


class SqliteConfig:
    """Config documents in the SQLite file ``path``; ``key`` (32 bytes, see
    :func:`micro.config.keys.load_key`) encrypts secrets; ``clock`` stamps rows."""

    def __init__(
        self, path: Path | str, key: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._cipher = Cipher(key)
        self._clock = clock
        self._hub = Hub()
        self._cache: dict[str, tuple[Tree, int]] = {}
        self._writer: Writer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (and create) the database; ``internal`` if it cannot be opened."""
        if self._writer is not None:
            return
        async with self._lock:
            if self._closed:
                raise unavailable("config", "the config database is closed")
            if self._writer is not None:
                return
            loop = asyncio.get_running_loop()
            pool = ThreadPoolExecutor(1, thread_name_prefix="micro-config-read")
            try:
                write_conn, read_conn = await loop.run_in_executor(pool, self._open)
            except (sqlite3.Error, OSError, ValueError) as exc:
                pool.shutdown(wait=False)
                raise internal("config", f"cannot open {self.path}: {exc}") from exc
            self._loop, self._pool, self._reader = loop, pool, read_conn
            self._writer = Writer(write_conn, self._cipher, self._from_writer, self._clock)

    def _open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(str(self.path))
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > _FORMAT:
                raise ValueError(f"format {found} is newer than this version knows ({_FORMAT})")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version={_FORMAT}")
            return conn, connect(str(self.path))
        except BaseException:
            conn.close()
            raise

    async def close(self) -> None:
        """End watchers, finish queued writes and close the database."""
        self._closed = True
        self._hub.close()
        async with self._lock:
            writer, self._writer = self._writer, None
            pool, reader = self._pool, self._reader
            self._pool = self._reader = None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if pool is not None and reader is not None:
            await asyncio.get_running_loop().run_in_executor(pool, reader.close)
            pool.shutdown(wait=False)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, namespace: str, path: str = "", secrets: bool = False) -> Any:
        """A copy of the value at ``path`` (``None`` if absent)."""
        check_namespace(namespace)
        at = split_path(path)
        tree = await self._tree(namespace)
        return render_at(tree, namespace, at, self._cipher if secrets else None)

    async def _tree(self, namespace: str) -> Tree:
        cached = self._cache.get(namespace)
        if cached is not None:
            return cached[0]
        await self.start()
        assert self._pool is not None and self._reader is not None
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._pool, read_document, self._reader, namespace
            )
        except (sqlite3.Error, msgspec.DecodeError, ValueError) as exc:
            raise internal("config", f"cannot read namespace {namespace!r}: {exc}") from exc
        cached = self._cache.get(namespace)
        if cached is None or cached[1] < loaded[1]:  # a write may have landed meanwhile
            self._cache[namespace] = cached = loaded
        return cached[0]

    # -- writes --------------------------------------------------------------------------------

    async def set(self, namespace: str, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value; durable when
        this returns."""
        check_namespace(namespace)
        at = split_path(path)
        await self._submit(Op(namespace, at, False, normalize(value, at), secret))

    async def delete(self, namespace: str, path: str) -> None:
        """Remove the value at ``path``; durable when this returns."""
        check_namespace(namespace)
        await self._submit(Op(namespace, split_path(path), True))

    async def _submit(self, op: Op) -> None:
        await self.start()
        writer = self._writer
        if writer is None:
            raise unavailable("config", "the config database is closed")
        op.future = asyncio.get_running_loop().create_future()
        writer.submit(op)
        await op.future

    def _from_writer(self, results: list[tuple[Op, Outcome]]) -> None:
        """Called in the writer thread after each transaction."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, results)

    def _committed(self, results: list[tuple[Op, Outcome]]) -> None:
        for op, outcome in results:
            if isinstance(outcome, Applied):
                cached = self._cache.get(op.namespace)
                if cached is None or cached[1] < outcome.version:
                    self._cache[op.namespace] = (outcome.new, outcome.version)
                self._hub.publish(outcome)
            future = op.future
            if future is None or future.done():  # the caller gave up waiting
                continue
            if isinstance(outcome, MicroError):
                future.set_exception(outcome)
            else:
                future.set_result(None)

    # -- watch ---------------------------------------------------------------------------------

    def watchers(self) -> int:
        """How many watchers are subscribed."""
        return self._hub.count()

    def watch(self, namespace: str, path: str = "") -> AsyncIterator[Change]:
        """Every change at or under ``path`` from now on (subscribed before this returns)."""
        check_namespace(namespace)
        return self._hub.watch(namespace, split_path(path))
