"""The whole sync protocol on etcd (v3 API, via ``aetcd``): locks, elections, maps, queues.

:class:`EtcdSync` runs the same rules as the memory and SQLite backends
(:mod:`micro.sync._logic`, unchanged) against rows kept in etcd, so every server of a
cluster shares one set of locks, maps and queues. Each operation is an **optimistic,
restartable transaction**:

1. The logic function runs against :class:`EtcdTables`, a snapshot of the keys loaded so
   far. Writes are buffered. Touching data that is not loaded yet raises an internal
   ``_Missing``; the key (or key prefix) is loaded from etcd and the function runs again
   from scratch on the enlarged snapshot (its buffered writes are thrown away).
2. A function that wrote nothing and needed one load returns at once (one linearizable read).
3. Otherwise one etcd transaction commits the writes if every key the function read still
   has the ``mod_revision`` it was read at (0: still absent) and no key was created or
   changed under any prefix it scanned since the scan (a row it picked from a scan is
   compared on its own too, which also catches its deletion). If another server got in
   between, everything is loaded afresh and the function runs again (at most
   :data:`MAX_TRIES` times in a row, with a short random backoff, then ``unavailable``).
   Errors decided on data from several loads are checked the same way before they are
   raised.

etcd's transactions compare-and-swap on revisions linearizably, so the result is the same as
if each call ran alone, on one machine, at its commit: exactly one of two racing acquirers
wins, a map compare-and-set has one winner, two workers never hold the same task.

Key layout under ``prefix`` (names percent-encoded with ``quote(name, safe="")``):

- ``locks/<name>``: msgpack :class:`~micro.sync._tables.LockRow` (token, owner, expires).
  Rows stay after release, so a lock's fencing token never goes back (1, 2, 3, ... per
  name, as with SQLite), also across etcd restarts (etcd keeps its data dir).
- ``maps/<map>/<key>``: msgpack ``(value, version)``.
- ``seq``: the last task id; ``tasks/<queue>/<id, 20 digits>``: ready or leased tasks
  (msgpack :class:`~micro.sync._tables.TaskRow` without the body, so the scan behind each
  ``lease`` stays small); ``dead/<queue>/<id>``: dead-lettered ones; ``bodies/<id>``: the
  body (written and deleted with the task, never changed); ``ids/<id>``: the queue of the
  task. A ``lease`` that dead-letters many expired tasks commits them in batches (etcd
  refuses transactions of more than 128 operations by default).

**Time.** Lock expiry, task due times and task leases are decided by the injected clock
(the wall clock in production), not by etcd leases: the servers sharing an etcd must keep
their clocks synchronised (NTP). A skewed clock can only shorten or lengthen a lease by the
skew; fencing tokens still protect resources (a resource rejects a token smaller than the
last it saw), whatever the clocks say.

Waiting (``acquire`` with ``wait``, ``campaign``, ``observe``) is inherited from
:class:`~micro.sync._base.LocalSync`: it wakes on changes made through this object and
re-checks every :data:`~micro.sync.POLL_INTERVAL` seconds, which is how changes made by
other servers are seen.

Connection: lazy (the first call or :meth:`EtcdSync.start` connects); a failure raises
``unavailable`` (or ``timeout``) and the next call connects again, to the next endpoint.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import msgspec
from aetcd.utils import prefix_range_end  # type: ignore[import-untyped]

from ..errors import MicroError, unavailable
from ..registry._etcd_conn import EtcdConnection, EtcdSettings
from . import ID
from ._base import LocalSync
from ._tables import LockRow, Tables, TaskRow

__all__ = ["MAX_TRIES", "EtcdSettings", "EtcdSync", "EtcdTables"]

T = TypeVar("T")

MAX_TRIES = 100  # transactions one call may lose to concurrent writers before `unavailable`
_BACKOFF = 0.002  # seconds: the first retry waits up to this, doubling up to _BACKOFF_MAX
_BACKOFF_MAX = 0.05

_MAX_WRITES = 64  # buffered keys before task_next commits what lease did so far (etcd
# refuses transactions of more than 128 operations or compares by default: --max-txn-ops)

_BODY_BATCH = 8  # task bodies (up to 1 MiB each) read at once, under gRPC's 4 MiB per answer
_Entry = tuple[bytes, int]  # a map entry: value, version


class _Missing(Exception):
    """The logic touched data not loaded yet: ``keys`` (read in one revision), the key range
    ``prefix``, or task ``bodies`` (immutable: read one by one).

    Not a :class:`ValueError` or a :class:`~micro.errors.MicroError`, so ``_logic`` never
    catches it."""

    def __init__(
        self, keys: Iterable[bytes] = (), prefix: bytes | None = None, bodies: Iterable[bytes] = ()
    ) -> None:
        super().__init__("not loaded")
        self.keys = list(keys)
        self.prefix = prefix
        self.bodies = list(bodies)


class _Stale(Exception):
    """The snapshot is inconsistent (a task's body vanished): load everything again."""


class _Flush(Exception):
    """Commit the writes buffered so far, then run the logic again (see ``task_next``)."""


class _Layout:
    """Where each row lives under the key prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _k(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    def lock(self, name: str) -> bytes:
        return self._k("locks", quote(name, safe=""))

    def map_prefix(self, map: str) -> bytes:
        return self._k("maps", quote(map, safe=""), "")

    def map_key(self, map: str, key: str) -> bytes:
        return self.map_prefix(map) + quote(key, safe="").encode()

    @property
    def seq(self) -> bytes:
        return self._k("seq")

    def ids(self, id: int) -> bytes:
        return self._k("ids", f"{id:020d}")

    def tasks(self, queue: str) -> bytes:
        return self._k("tasks", quote(queue, safe=""), "")

    def dead(self, queue: str) -> bytes:
        return self._k("dead", quote(queue, safe=""), "")

    def body(self, id: int) -> bytes:
        return self._k("bodies", f"{id:020d}")


class _Loaded:
    """What one call has read from etcd: key -> (value or None, mod_revision), and each
    scanned prefix -> the etcd revision of the scan."""

    def __init__(self) -> None:
        self.keys: dict[bytes, tuple[bytes | None, int]] = {}
        self.ranges: dict[bytes, int] = {}
        self.loads = 0


class EtcdTables:
    """:class:`~micro.sync._tables.Tables` over a :class:`_Loaded` snapshot. Reads see the
    buffered writes; reads of data not loaded raise ``_Missing``. Records what it read
    (``reads``: key -> revision, ``ranges``: scanned prefixes) and buffers ``writes`` (key ->
    value, None to delete) for the commit."""

    def __init__(self, layout: _Layout, loaded: _Loaded) -> None:
        self._at = layout
        self.loaded = loaded
        self.reads: dict[bytes, int] = {}
        self.ranges: set[bytes] = set()
        self.writes: dict[bytes, bytes | None] = {}

    # -- raw access ---------------------------------------------------------------------------

    def _known(self, key: bytes) -> tuple[bytes | None, int] | None:
        found = self.loaded.keys.get(key)
        if found is None and any(key.startswith(p) for p in self.loaded.ranges):
            found = (None, 0)  # inside a scanned prefix and not in it: absent
        return found

    def _get_many(self, keys: list[bytes]) -> list[bytes | None]:
        missing = [k for k in keys if k not in self.writes and self._known(k) is None]
        if missing:
            raise _Missing(missing)
        values: list[bytes | None] = []
        for key in keys:
            if key in self.writes:
                values.append(self.writes[key])
                continue
            found = self._known(key)
            assert found is not None
            self.reads.setdefault(key, found[1])
            values.append(found[0])
        return values

    def _get(self, key: bytes) -> bytes | None:
        return self._get_many([key])[0]

    def _scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every (key, value) under ``prefix``, by key. The prefix counts as read: a key
        created or changed under it since the scan fails the commit. A key *deleted* since
        fails it only if :meth:`_pin`-ned (which costs one compare; etcd allows 128)."""
        if prefix not in self.loaded.ranges:
            raise _Missing(prefix=prefix)
        self.ranges.add(prefix)
        merged = {k: v for k, (v, _) in self.loaded.keys.items() if k.startswith(prefix)}
        merged.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        return sorted((k, v) for k, v in merged.items() if v is not None)

    def _pin(self, key: bytes) -> None:
        """Count a scanned ``key`` as read (the commit fails if it was deleted since)."""
        self._get(key)

    def _bodies(self, ids: list[int]) -> list[bytes]:
        """The bodies of tasks ``ids``. A body never changes while its task exists (it is
        written and deleted with the task's row), so it is not compared at commit: the
        row is."""
        keys = [self._at.body(id) for id in ids]
        missing = [k for k in keys if k not in self.writes and k not in self.loaded.keys]
        if missing:
            raise _Missing(bodies=missing)
        bodies = []
        for key in keys:
            body = self.writes[key] if key in self.writes else self.loaded.keys[key][0]
            if body is None:  # the task went after its row was read
                raise _Stale()
            bodies.append(body)
        return bodies

    def _encode(self, row: TaskRow) -> bytes:
        """A task row without its body (kept at ``bodies/<id>``, so scans stay small)."""
        return msgspec.msgpack.encode(msgspec.structs.replace(row, body=b""))

    def _with_bodies(self, raws: list[bytes]) -> list[TaskRow]:
        rows = [msgspec.msgpack.decode(raw, type=TaskRow) for raw in raws]
        for row, body in zip(rows, self._bodies([r.id for r in rows]), strict=True):
            row.body = body
        return rows

    def _put(self, key: bytes, value: bytes | None) -> None:
        self.writes[key] = value

    # -- Tables -------------------------------------------------------------------------------

    def lock_get(self, name: str) -> LockRow | None:
        raw = self._get(self._at.lock(name))
        return None if raw is None else msgspec.msgpack.decode(raw, type=LockRow)

    def lock_put(self, name: str, row: LockRow) -> None:
        self._put(self._at.lock(name), msgspec.msgpack.encode(row))

    def map_get(self, map: str, key: str) -> tuple[bytes, int] | None:
        raw = self._get(self._at.map_key(map, key))
        return None if raw is None else msgspec.msgpack.decode(raw, type=_Entry)

    def map_put(self, map: str, key: str, value: bytes, version: int) -> None:
        self._put(self._at.map_key(map, key), msgspec.msgpack.encode((value, version)))

    def map_delete(self, map: str, key: str) -> None:
        self._put(self._at.map_key(map, key), None)

    def map_list(self, map: str) -> list[tuple[str, bytes, int]]:
        prefix = self._at.map_prefix(map)
        entries = []
        for k, raw in self._scan(prefix):
            value, version = msgspec.msgpack.decode(raw, type=_Entry)
            entries.append((unquote(k[len(prefix) :].decode()), value, version))
        return entries

    def _row_key(self, row: TaskRow) -> bytes:
        at = self._at.dead if row.state == "dead" else self._at.tasks
        return at(row.queue) + f"{row.id:020d}".encode()

    def task_insert(self, row: TaskRow) -> int:
        last = self._get(self._at.seq)
        row.id = (int(last) if last is not None else 0) + 1
        self._put(self._at.seq, str(row.id).encode())
        self._put(self._at.ids(row.id), row.queue.encode())
        self._put(self._at.body(row.id), row.body)
        self._put(self._row_key(row), self._encode(row))
        return row.id

    def task_update(self, row: TaskRow) -> None:
        if row.state == "dead":  # moves from tasks/ to dead/
            self._put(self._at.tasks(row.queue) + f"{row.id:020d}".encode(), None)
        self._put(self._row_key(row), self._encode(row))

    def _task_keys(self, id: int) -> list[bytes] | None:
        """The keys of task ``id``: ids entry, ready/leased row, dead row, body."""
        if id <= 0:
            return None
        queue = self._get(self._at.ids(id))
        if queue is None:
            return None
        suffix = f"{id:020d}".encode()
        name = queue.decode()
        tasks, dead = self._at.tasks(name) + suffix, self._at.dead(name) + suffix
        return [self._at.ids(id), tasks, dead, self._at.body(id)]

    def task_get(self, id: int) -> TaskRow | None:
        keys = self._task_keys(id)
        if keys is None:
            return None
        body = keys[3]
        if body not in self.writes and body not in self.loaded.keys:  # with the rows
            raise _Missing([k for k in keys[1:3] if self._known(k) is None], bodies=[body])
        for raw in self._get_many(keys[1:3]):
            if raw is not None:
                return self._with_bodies([raw])[0]
        return None

    def task_delete(self, id: int) -> None:
        for key in self._task_keys(id) or []:
            self._put(key, None)

    def task_next(self, queue: str, now: float) -> TaskRow | None:
        """The next due row. ``lease`` calls it in a loop that dead-letters expired rows
        until it finds one to hand out; each turn leaves a consistent state, so after
        :data:`_MAX_WRITES` buffered keys the moves so far are committed on their own
        (``_Flush``) and ``lease`` runs again: one etcd transaction stays within limits."""
        if len(self.writes) >= _MAX_WRITES:
            raise _Flush()
        best: tuple[float, int, bytes, TaskRow] | None = None
        for key, raw in self._scan(self._at.tasks(queue)):
            row = msgspec.msgpack.decode(raw, type=TaskRow)
            if (
                row.state != "dead"
                and row.due <= now
                and (best is None or (row.due, row.id) < best[:2])
            ):
                best = (row.due, row.id, key, row)
        if best is None:
            return None
        self._pin(best[2])
        best[3].body = self._bodies([best[1]])[0]
        return best[3]

    def task_dead(self, queue: str) -> list[TaskRow]:
        # Not pinned (dead rows are never deleted): one compare whatever their number.
        return self._with_bodies([raw for _, raw in self._scan(self._at.dead(queue))])


class EtcdSync(LocalSync):
    """Locks, elections, maps and queues kept in etcd at ``endpoints`` under ``prefix``,
    shared by every process using the same etcd and prefix. Time-based decisions read
    ``clock`` (keep the processes' clocks synchronised)."""

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        prefix: str = "/micro/sync/",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.settings = EtcdSettings(tuple(listed), prefix, timeout)
        self._conn = EtcdConnection(self.settings, ID)
        self._layout = _Layout(prefix)

    async def start(self) -> None:
        """Connect now (optional: the first call connects); ``unavailable`` if etcd is not
        reachable."""
        await self._conn.client()

    async def _run(self, fn: Callable[[Tables], T]) -> T:
        lost = 0  # transactions lost in a row to concurrent writers
        while True:
            loaded = _Loaded()
            while True:
                view = EtcdTables(self._layout, loaded)
                try:
                    result = fn(view)
                except _Missing as missing:
                    await self._load(loaded, missing)
                    continue
                except _Flush:
                    done = await self._commit(view)
                    break
                except _Stale:
                    done = False
                    break
                except MicroError:
                    # Decided on one consistent read: final. Else check the reads still hold.
                    if loaded.loads <= 1 or await self._commit(view, writes=False):
                        raise
                    done = False
                    break
                if (not view.writes and loaded.loads <= 1) or await self._commit(view):
                    return result
                done = False
                break
            if done:  # a flush went through: progress, run again at once
                lost = 0
                continue
            lost += 1
            if lost >= MAX_TRIES:
                raise unavailable(ID, f"etcd: {MAX_TRIES} transactions in a row lost to others")
            await asyncio.sleep(random.uniform(0, min(_BACKOFF * 2**lost, _BACKOFF_MAX)))

    async def _get(self, key: bytes) -> tuple[bytes | None, int]:
        """``key``'s value (None: absent) and mod revision (0: absent)."""
        found: Any = await self._conn.call(lambda c: c.get(key))
        return (None, 0) if found is None else (bytes(found.value), int(found.mod_revision))

    async def _load(self, loaded: _Loaded, missing: _Missing) -> None:
        """Read ``missing``'s keys (in one revision), prefix and bodies into ``loaded``.
        Only key and prefix reads count in ``loaded.loads``: bodies never change."""
        await asyncio.gather(
            self._load_bodies(loaded, missing.bodies), self._load_rows(loaded, missing)
        )

    async def _load_bodies(self, loaded: _Loaded, bodies: list[bytes]) -> None:
        for start in range(0, len(bodies), _BODY_BATCH):
            batch = bodies[start : start + _BODY_BATCH]
            got = await asyncio.gather(*(self._get(key) for key in batch))
            loaded.keys.update(zip(batch, got, strict=True))

    async def _load_rows(self, loaded: _Loaded, missing: _Missing) -> None:
        if missing.prefix is None and not missing.keys:
            return
        loaded.loads += 1
        if missing.prefix is not None:
            prefix = missing.prefix
            found: Any = await self._conn.call(lambda c: c.get_prefix(prefix))
            for key in [k for k in loaded.keys if k.startswith(prefix)]:
                loaded.keys[key] = (None, 0)  # gone unless listed below
            for kv in found.kvs:
                loaded.keys[bytes(kv.key)] = (bytes(kv.value), int(kv.mod_revision))
            loaded.ranges[prefix] = int(found.header.revision)
        keys = missing.keys
        if len(keys) == 1:
            loaded.keys[keys[0]] = await self._get(keys[0])
        elif keys:

            async def txn(c: Any) -> tuple[bool, list[Any]]:
                t = c.transactions
                done: tuple[bool, list[Any]] = await c.transaction(
                    compare=[], success=[t.get(k) for k in keys], failure=[]
                )
                return done

            _, responses = await self._conn.call(txn)
            for key, response in zip(keys, responses, strict=True):
                kv = response[0][1] if response else None
                loaded.keys[key] = (None, 0) if kv is None else (kv.value, kv.mod_revision)

    async def _commit(self, view: EtcdTables, *, writes: bool = True) -> bool:
        """Apply ``view``'s writes (if ``writes``) if nothing it read changed; False if
        something did."""
        ranges = {p: view.loaded.ranges[p] for p in view.ranges}

        async def txn(c: Any) -> tuple[bool, list[Any]]:
            t = c.transactions
            compare = [t.mod(k) == rev for k, rev in view.reads.items()]
            compare += [t.mod(p, prefix_range_end(p)) < rev + 1 for p, rev in ranges.items()]
            ops = [
                t.delete(k) if v is None else t.put(k, v)
                for k, v in (view.writes.items() if writes else ())
            ]
            done: tuple[bool, list[Any]] = await c.transaction(
                compare=compare, success=ops, failure=[]
            )
            return done

        ok, _ = await self._conn.call(txn)
        return ok

    async def observe(self, election: str) -> AsyncIterator[str | None]:
        """The leader now, then each time it changes (seen within
        :data:`~micro.sync.POLL_INTERVAL` when another server changes it). Ends quietly when
        :meth:`close` or :meth:`end_observers` stops it mid-read."""
        stream = super().observe(election)
        try:
            async for leader in stream:
                yield leader
        except MicroError:
            if not self._ending:
                raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """End observers and close the connection (the data stays in etcd)."""
        await super().close()
        await self._conn.close()
