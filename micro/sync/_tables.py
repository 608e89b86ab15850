"""The storage a sync backend runs its logic on: plain rows, no rules (see ``_logic``)."""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["LockRow", "MemoryTables", "Tables", "TaskRow"]


class LockRow(msgspec.Struct):
    """A lock name's last token and, while held, its owner and expiry."""

    token: int
    owner: str | None = None
    expires: float | None = None


class TaskRow(msgspec.Struct):
    """A task: ``state`` is ready | leased | dead; ``due`` is when it is next deliverable
    (ready) or when its lease ends (leased)."""

    id: int
    queue: str
    body: bytes
    max_attempts: int
    due: float
    state: str = "ready"
    attempts: int = 0
    worker: str = ""
    error: str = ""


class Tables(Protocol):
    """Row access; every call of one logic function runs atomically."""

    def lock_get(self, name: str) -> LockRow | None: ...
    def lock_put(self, name: str, row: LockRow) -> None: ...
    def map_get(self, map: str, key: str) -> tuple[bytes, int] | None: ...
    def map_put(self, map: str, key: str, value: bytes, version: int) -> None: ...
    def map_delete(self, map: str, key: str) -> None: ...
    def map_list(self, map: str) -> list[tuple[str, bytes, int]]: ...
    def task_insert(self, row: TaskRow) -> int: ...
    def task_update(self, row: TaskRow) -> None: ...
    def task_get(self, id: int) -> TaskRow | None: ...
    def task_delete(self, id: int) -> None: ...
    def task_next(self, queue: str, now: float) -> TaskRow | None: ...
    def task_dead(self, queue: str) -> list[TaskRow]: ...


class MemoryTables:
    """:class:`Tables` in dicts."""

    def __init__(self) -> None:
        self.locks: dict[str, LockRow] = {}
        self.maps: dict[str, dict[str, tuple[bytes, int]]] = {}
        self.tasks: dict[int, TaskRow] = {}
        self._seq = 0

    def lock_get(self, name: str) -> LockRow | None:
        row = self.locks.get(name)
        return None if row is None else LockRow(row.token, row.owner, row.expires)

    def lock_put(self, name: str, row: LockRow) -> None:
        self.locks[name] = row

    def map_get(self, map: str, key: str) -> tuple[bytes, int] | None:
        return self.maps.get(map, {}).get(key)

    def map_put(self, map: str, key: str, value: bytes, version: int) -> None:
        self.maps.setdefault(map, {})[key] = (value, version)

    def map_delete(self, map: str, key: str) -> None:
        entries = self.maps.get(map, {})
        entries.pop(key, None)
        if not entries:
            self.maps.pop(map, None)

    def map_list(self, map: str) -> list[tuple[str, bytes, int]]:
        return [(k, v, n) for k, (v, n) in sorted(self.maps.get(map, {}).items())]

    def task_insert(self, row: TaskRow) -> int:
        self._seq += 1
        row.id = self._seq
        self.tasks[row.id] = row
        return row.id

    def task_update(self, row: TaskRow) -> None:
        self.tasks[row.id] = row

    def task_get(self, id: int) -> TaskRow | None:
        row = self.tasks.get(id)
        return None if row is None else msgspec.structs.replace(row)

    def task_delete(self, id: int) -> None:
        self.tasks.pop(id, None)

    def task_next(self, queue: str, now: float) -> TaskRow | None:
        due = [t for t in self.tasks.values() if t.queue == queue and t.state != "dead"]
        due = [t for t in due if t.due <= now]
        if not due:
            return None
        return msgspec.structs.replace(min(due, key=lambda t: (t.due, t.id)))

    def task_dead(self, queue: str) -> list[TaskRow]:
        return [t for t in self.tasks.values() if t.queue == queue and t.state == "dead"]
