"""Checks and their bounded history, in memory and (optionally) in a Store."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from ..errors import conflict, internal, not_found
from ..store import DeleteOp
from . import MAX_CHECKS, Check, CheckResult
from ._validate import validate_check, validate_name

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Book", "Entry"]

DATABASE = "micro"
TABLE = "monitor"
_ID = "monitor"
_check_decoder = msgspec.msgpack.Decoder(Check)
_result_decoder = msgspec.msgpack.Decoder(CheckResult)
_encoder = msgspec.msgpack.Encoder()


@dataclass
class Entry:
    """A check, its history (newest last) and its schedule."""

    check: Check
    history: deque[CheckResult]
    seq: int = 0  # sequence of the newest stored result
    due: float = 0.0
    failing: bool = False
    running: bool = field(default=False)


def _check_key(name: str) -> str:
    return f"check/{name}"


def _history_key(name: str, seq: int) -> str:
    return f"history/{name}/{seq:016d}"


class Book:
    """The checks. Every change is written to ``store`` (when given) before it is visible."""

    def __init__(self, store: Store | None, history: int) -> None:
        self._store = store
        self._limit = history
        self.entries: dict[str, Entry] = {}

    async def load(self, now: float) -> None:
        """Read the stored checks and their history (no-op without a store)."""
        if self._store is None:
            return
        try:
            for key in await self._store.list_keys(DATABASE, TABLE, prefix="check/"):
                (record,) = await self._store.read(DATABASE, TABLE, key)
                check = _check_decoder.decode(record.value)
                stored = await self._store.read(
                    DATABASE,
                    TABLE,
                    f"history/{check.name}/",
                    prefix=True,
                    order="desc",
                    limit=self._limit,
                )
                older = await self._store.list_keys(
                    DATABASE,
                    TABLE,
                    prefix=f"history/{check.name}/",
                    order="desc",
                    offset=self._limit,
                )
                for key in older:  # kept under a larger limit before this start
                    await self._store.delete(DATABASE, TABLE, key)
                results = [_result_decoder.decode(r.value) for r in reversed(stored)]
                seq = int(stored[0].key.rsplit("/", 1)[1]) if stored else 0
                self.entries[check.name] = Entry(
                    check,
                    deque(results, maxlen=self._limit),
                    seq,
                    due=now,
                    failing=bool(results) and not results[-1].ok,
                )
        except (msgspec.DecodeError, ValueError) as exc:
            raise internal(_ID, f"stored monitor data is corrupt: {exc}") from exc

    def get(self, name: str) -> Entry:
        """The entry of ``name``; ``not_found`` if there is none."""
        validate_name(name)
        entry = self.entries.get(name)
        if entry is None:
            raise not_found(_ID, f"no check named {name!r}")
        return entry

    async def add(self, check: Check, now: float) -> None:
        """Add a new check, due now."""
        validate_check(check)
        if check.name in self.entries:
            raise conflict(_ID, f"a check named {check.name!r} exists; remove it first")
        if len(self.entries) >= MAX_CHECKS:
            raise conflict(_ID, f"at most {MAX_CHECKS} checks")
        if self._store is not None:
            await self._store.write(DATABASE, TABLE, _check_key(check.name), _encoder.encode(check))
        self.entries[check.name] = Entry(check, deque(maxlen=self._limit), due=now)

    async def remove(self, name: str) -> None:
        """Remove a check and its history."""
        self.get(name)
        if self._store is not None:
            keys = await self._store.list_keys(DATABASE, TABLE, prefix=f"history/{name}/")
            keys.append(_check_key(name))
            for start in range(0, len(keys), 1000):
                ops = [DeleteOp(key) for key in keys[start : start + 1000]]
                await self._store.transact(DATABASE, TABLE, ops)
        self.entries.pop(name, None)

    async def record(self, entry: Entry, result: CheckResult) -> None:
        """Append ``result`` to the history of ``entry`` (dropping the oldest over the limit)."""
        name = entry.check.name
        if self.entries.get(name) is not entry:
            return  # removed while it ran
        entry.seq += 1
        if self._store is not None:
            key = _history_key(name, entry.seq)
            await self._store.write(DATABASE, TABLE, key, _encoder.encode(result))
            if self.entries.get(name) is not entry:  # removed meanwhile: leave nothing behind
                await self._store.delete(DATABASE, TABLE, key)
                return
            if entry.seq > self._limit:
                await self._store.delete(
                    DATABASE, TABLE, _history_key(name, entry.seq - self._limit)
                )
        entry.history.append(result)
