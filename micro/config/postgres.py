"""Config in PostgreSQL, shared by many processes, watched across them with LISTEN/NOTIFY.

Each namespace is one row (version and document, secrets encrypted exactly as
:mod:`micro.config.sqlite` does, with the same ``key``). A write locks its namespace
(advisory lock), applies the change to the stored document, saves it with a change-log row
and a ``NOTIFY`` in one transaction (durable when the call returns), then tells this
process's watchers. A listener connection receives the notifications of every process and
replays the logged writes it has not seen, in version order, so every watcher sees every
change once, whoever wrote it (schema: :mod:`micro.config._pgsql`). If a process falls
more than :data:`~micro.config._pgsql.KEEP` versions behind, its watchers get one change
from what they saw last to the current document.

Lifecycle: :meth:`PostgresConfig.start` (or the first call) opens the pool, applies the
migrations and starts the listener; calls wait (up to ``connect_timeout``) for it to listen,
so a watcher is live once a later call returned. Lost connections fail calls with
``unavailable`` and are reopened by themselves. :meth:`PostgresConfig.close` ends watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec

from ..errors import MicroError, internal, unavailable
from ..store._pgpool import LOST, PostgresSettings, close_pool, open_pool
from . import Change
from . import _pgsql as sql
from ._paths import check_namespace, normalize, split_path
from ._state import Applied, Documents, render_at
from ._tree import Tree
from ._watch import Hub
from .keys import Cipher

__all__ = ["PostgresConfig"]

log = logging.getLogger("micro.config")

class PostgresConfig:
    """Config documents in the PostgreSQL database of ``dsn``; ``key`` (32 bytes, see
    :func:`micro.config.keys.load_key`) encrypts secrets; ``clock`` stamps rows."""

    def __init__(
        self,
        dsn: str,
        key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.settings = PostgresSettings(dsn, pool_min, pool_max, connect_timeout, command_timeout)
        self._cipher = Cipher(key)
        self._clock = clock
        self._hub = Hub()
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._seen: dict[str, tuple[Tree, int]] = {}  # what the watchers were told last
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, migrate, start listening; ``unavailable`` if the server is down."""
        if self._closed:
            raise unavailable("config", "the config store is closed")
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await open_pool(self.settings, sql.migrate, "config")
                    self._listener = asyncio.get_running_loop().create_task(self._listen())
        if not self._listening.is_set():
            try:
                await asyncio.wait_for(self._listening.wait(), self.settings.connect_timeout)
            except TimeoutError:
                raise unavailable("config", "cannot listen for config changes") from None

    async def close(self) -> None:
        """End watchers, stop listening, close the pool."""
        self._closed = True
        self._hub.close()
        tasks = [t for t in (self._listener, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listener = None
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, self.settings.connect_timeout)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        await self.start()
        assert self._pool is not None
        try:
            async with self._pool.acquire(timeout=self.settings.connect_timeout) as conn:
                yield conn
        except MicroError:
            raise
        except LOST as exc:
            raise unavailable("config", f"PostgreSQL is unavailable: {exc}") from exc
        except (asyncpg.PostgresError, msgspec.DecodeError, ValueError) as exc:
            raise internal("config", f"PostgreSQL config failed: {exc}") from exc

    # -- reads and writes ----------------------------------------------------------------------

    async def get(self, namespace: str, path: str = "", secrets: bool = False) -> Any:
        """A copy of the value at ``path`` (``None`` if absent)."""
        check_namespace(namespace)
        at = split_path(path)
        async with self._conn() as conn:
            tree, _ = await sql.load(conn, namespace)
        return render_at(tree, namespace, at, self._cipher if secrets else None)

    async def set(self, namespace: str, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value; durable when
        this returns."""
        check_namespace(namespace)
        at = split_path(path)
        value = normalize(value, at)
        await self._write(namespace, lambda docs: docs.set(namespace, at, value, secret))

    async def delete(self, namespace: str, path: str) -> None:
        """Remove the value at ``path``; durable when this returns."""
        check_namespace(namespace)
        at = split_path(path)
        await self._write(namespace, lambda docs: docs.delete(namespace, at))

    async def _write(self, namespace: str, change: Callable[[Documents], Applied | None]) -> None:
        async with self._conn() as conn, conn.transaction():
            await sql.lock(conn, namespace)
            doc = await sql.load(conn, namespace)
            applied = change(Documents(self._cipher, lambda _: doc))
            if applied is None:
                return
            await sql.save(conn, applied, self._clock())
        await self._advance(namespace, applied.version, applied)

    # -- watch ---------------------------------------------------------------------------------

    def watchers(self) -> int:
        """How many watchers are subscribed."""
        return self._hub.count()

    def watch(self, namespace: str, path: str = "") -> AsyncIterator[Change]:
        """Every change at or under ``path`` from now on, written by any process."""
        check_namespace(namespace)
        return self._hub.watch(namespace, split_path(path))

    async def _listen(self) -> None:
        """Keep a connection listening on the channel; after a reconnect, catch up."""
        backoff = 0.05
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.settings.dsn, timeout=self.settings.connect_timeout
                )
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(sql.CHANNEL, self._notified)
                for namespace in list(self._seen):
                    self._spawn(self._advance(namespace, None, None))
                self._listening.set()
                backoff = 0.05
                await lost.wait()
            except (*LOST, asyncpg.PostgresError) as exc:
                log.debug("config: listener connection failed: %s", exc)
            finally:
                self._listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        version, _, namespace = payload.partition(" ")
        if version.isdigit() and namespace:
            self._spawn(self._advance(namespace, int(version), None))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance(self, namespace: str, target: int | None, local: Applied | None) -> None:
        """Tell the watchers every write of ``namespace`` up to version ``target`` (None:
        the current one) they have not been told yet, in order; ``local`` is the write
        this process just made (version ``target``)."""
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            try:
                await self._replay(namespace, target, local)
            except MicroError as err:  # the write itself is done: the next notification retries
                log.warning("config: cannot replay changes of %r: %s", namespace, err.detail)

    async def _replay(self, namespace: str, target: int | None, local: Applied | None) -> None:
        known = self._seen.get(namespace)
        if known is not None and target is not None and known[1] >= target:
            return
        if local is not None and (known is None or known[1] == local.version - 1):
            self._tell(local)
            return
        async with self._conn() as conn:
            if target is None:
                target = (await sql.load(conn, namespace))[1]
            if known is not None and known[1] >= target:
                return
            first = known[1] + 1 if known is not None else max(target - 1, 1)
            rows = await sql.changes(conn, namespace, first, target)
            if known is None:
                if rows and rows[0][0] == target - 1:
                    known = (rows.pop(0)[3], target - 1)
                else:
                    known = ({}, target - 1)
            elif not rows or rows[0][0] != first:  # pruned from the log: one summary change
                tree, version = await sql.load(conn, namespace)
                stored = rows[-1][4] if rows else b""
                rows = [(version, (), False, tree, stored)]
        old = known[0]
        for version, at, deleted, tree, stored in rows:
            self._tell(Applied(namespace, at, old, tree, version, deleted, stored))
            old = tree

    def _tell(self, applied: Applied) -> None:
        self._seen[applied.namespace] = (applied.new, applied.version)
        self._hub.publish(applied)


def _set_event(event: asyncio.Event, *_: object) -> None:
    event.set()
