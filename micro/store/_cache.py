"""A write-through cache of point reads for :mod:`micro.store.sqlite`.

Reading a key from SQLite costs a trip to a reader thread; a hot key should not. The cache
maps ``(database, table, key)`` to the key's record, or to ``None`` when the key is known to
be absent, least recently used first out, bounded in bytes. It is coherent because one
store object owns its file (a lock file keeps other processes out) and every write goes
through it:

- a committed write, delete or transaction puts its result into the cache (on the event
  loop, when the writer hands the batch back, whether or not the caller still waits) and
  moves :attr:`RecordCache.epoch` on;
- a read that missed fills the cache only if no write was handed back since the read was
  sent (same epoch): its answer may predate a write, so it must not overwrite that write's
  entry.

Expiry needs nothing special: a cached record carries its expiry and the store checks it
on every hit, exactly as SQLite does on every row.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from . import Op, Record, WriteOp
from ._rules import copy_record, expiry_of

__all__ = ["MISS", "RecordCache"]

CacheKey = tuple[str, str, str]


class _Miss:
    """What :meth:`RecordCache.get` returns for a key it knows nothing about."""

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = _Miss()

_ENTRY_OVERHEAD = 200  # bytes per entry beyond key and value: the dict slot, tuple, Record


def _size(key: CacheKey, record: Record | None) -> int:
    size = _ENTRY_OVERHEAD + len(key[2])
    if record is not None:
        size += len(record.value)
        for name, text in record.metadata.items():
            size += len(name) + len(text)
    return size


class RecordCache:
    """An LRU of records (or known absences) holding at most ``max_bytes``, roughly."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.epoch = 0
        self._entries: OrderedDict[CacheKey, Record | None] = OrderedDict()
        self._sizes: dict[CacheKey, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Record | _Miss | None:
        """The cached record of ``key``, ``None`` if known absent, else :data:`MISS`."""
        entries = self._entries
        try:
            record = entries[key]
        except (KeyError, TypeError):  # TypeError: unhashable input, refused by validation
            return MISS
        entries.move_to_end(key)
        return record

    def fill(self, key: CacheKey, record: Record | None, epoch: int) -> None:
        """Cache what a read sent at ``epoch`` found, unless a write came back since."""
        if epoch == self.epoch:
            self._put(key, record)

    def written(self, changes: list[tuple[CacheKey, Record | None]]) -> None:
        """Committed writes (a record) and deletes (``None``), in commit order."""
        self.epoch += 1
        for key, record in changes:
            self._put(key, record)

    # -- callbacks run on the loop when a job comes back (``after`` of the workers) ---------

    def filled(self, key: CacheKey, epoch: int, record: Record | None) -> Record | None:
        """A point read sent at ``epoch`` came back."""
        self.fill(key, record, epoch)
        return record

    def filled_many(
        self, database: str, table: str, keys: list[str], epoch: int, found: dict[str, Record]
    ) -> dict[str, Record]:
        """A bulk read of ``keys`` sent at ``epoch`` came back with ``found``."""
        for key in keys:
            self.fill((database, table, key), found.get(key), epoch)
        return found

    def wrote(self, database: str, table: str, record: Record, etag: str) -> Record:
        """``record`` was committed with ``etag``; the caller gets a copy."""
        record.etag = etag
        self.written([((database, table, record.key), record)])
        return copy_record(record)

    def deleted(self, database: str, table: str, key: str, _: None) -> None:
        """``key`` was deleted."""
        self.written([((database, table, key), None)])

    def transacted(
        self, database: str, table: str, ops: list[Op], now: float, etags: list[str]
    ) -> list[Record]:
        """``ops`` were committed at ``now``; ``etags`` are those of the writes. Returns the
        records written."""
        changes: list[tuple[CacheKey, Record | None]] = []
        written: list[Record] = []
        new_etags = iter(etags)
        for op in ops:
            record = None
            if isinstance(op, WriteOp):
                record = Record(
                    op.key, op.value, dict(op.metadata), expiry_of(op.ttl, now), next(new_etags)
                )
                written.append(copy_record(record))
            changes.append(((database, table, op.key), record))
        self.written(changes)
        return written

    def forget(self, key: CacheKey) -> None:
        """Drop ``key`` (an expired record seen on a hit)."""
        if self._entries.pop(key, MISS) is not MISS:
            self._bytes -= self._sizes.pop(key)

    def clear(self) -> None:
        """Drop everything."""
        self._entries.clear()
        self._sizes.clear()
        self._bytes = 0
        self.epoch += 1

    def _put(self, key: CacheKey, record: Record | None) -> None:
        size = _size(key, record)
        if size > self.max_bytes:
            self.forget(key)
            return
        entries = self._entries
        if key in entries:
            self._bytes -= self._sizes[key]
            entries.move_to_end(key)
        entries[key] = record
        self._sizes[key] = size
        self._bytes += size
        while self._bytes > self.max_bytes:
            old, _ = entries.popitem(last=False)
            self._bytes -= self._sizes.pop(old)
