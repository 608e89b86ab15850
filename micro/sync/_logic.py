"""The rules of every sync operation, as plain functions over :class:`Tables` at a time
``now``. Each runs atomically (the memory backend calls it on the loop, SQLite in one
transaction), so memory and SQLite behave identically."""

from __future__ import annotations

import math

from ..errors import bad_request, conflict, not_found, too_large
from . import BACKOFF_BASE, BACKOFF_MAX, ID, MAX_NAME, MAX_VALUE, MAX_WAIT, Lease, MapEntry, Task
from ._tables import LockRow, Tables, TaskRow

__all__ = [
    "ack",
    "acquire",
    "check_name",
    "check_seconds",
    "dead",
    "enqueue",
    "fail",
    "holder",
    "lease",
    "map_delete",
    "map_get",
    "map_list",
    "map_put",
    "release",
    "renew",
]


def check_name(field: str, value: str) -> str:
    """``value`` if it is a usable name, else ``bad_request`` naming ``field``."""
    if not isinstance(value, str) or not value:
        raise bad_request(ID, f"{field} must be a non-empty string")
    if len(value) > MAX_NAME:
        raise bad_request(ID, f"{field} is longer than {MAX_NAME} characters")
    if any(ord(c) < 32 for c in value):
        raise bad_request(ID, f"{field} must not contain control characters")
    return value


def check_seconds(field: str, value: float, *, zero: bool = False, most: float = 1e9) -> float:
    """``value`` if it is a finite number of seconds > 0 (>= 0 with ``zero``) and <= ``most``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(ID, f"{field} must be a finite number of seconds")
    if value < 0 or (value == 0 and not zero):
        raise bad_request(ID, f"{field} must be {'>= 0' if zero else '> 0'} (got {value})")
    if value > most:
        raise bad_request(ID, f"{field} must be at most {most:g} seconds (got {value})")
    return float(value)


def check_wait(value: float) -> float:
    """A valid ``wait``/``timeout``."""
    return check_seconds("wait", value, zero=True, most=MAX_WAIT)


def _check_bytes(field: str, value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise bad_request(ID, f"{field} must be bytes")
    if len(value) > MAX_VALUE:
        raise too_large(ID, f"{field} is {len(value)} bytes, more than {MAX_VALUE}")
    return bytes(value)


def _live(row: LockRow | None, now: float) -> bool:
    return row is not None and row.owner is not None and (row.expires or 0.0) > now


def holder(t: Tables, now: float, name: str) -> str | None:
    """Who holds lock ``name`` now, if anyone."""
    row = t.lock_get(name)
    return row.owner if row is not None and _live(row, now) else None


def acquire(t: Tables, now: float, name: str, owner: str, ttl: float) -> Lease | None:
    """Take lock ``name`` with the next token; None while someone else holds it."""
    row = t.lock_get(name)
    if row is not None and _live(row, now):
        return None
    token = (row.token if row is not None else 0) + 1
    t.lock_put(name, LockRow(token, owner, now + ttl))
    return Lease(name, owner, token, now + ttl)


def _held(t: Tables, now: float, lease: Lease, what: str) -> LockRow:
    row = t.lock_get(lease.name)
    if row is None or row.token != lease.token or row.owner != lease.owner:
        raise conflict(ID, f"cannot {what} lock {lease.name!r}: lease {lease.token} was lost")
    if not _live(row, now):
        raise conflict(ID, f"cannot {what} lock {lease.name!r}: lease {lease.token} expired")
    return row


def renew(t: Tables, now: float, lease: Lease, ttl: float) -> Lease:
    """Extend a live lease."""
    row = _held(t, now, lease, "renew")
    row.expires = now + ttl
    t.lock_put(lease.name, row)
    return Lease(lease.name, lease.owner, lease.token, now + ttl)


def release(t: Tables, now: float, lease: Lease) -> None:
    """Free a lock held by a live lease (the token stays, so the next one is larger)."""
    row = _held(t, now, lease, "release")
    t.lock_put(lease.name, LockRow(row.token))


def map_get(t: Tables, map: str, key: str) -> tuple[bytes, int]:
    """A key's value and version."""
    found = t.map_get(map, key)
    if found is None:
        raise not_found(ID, f"key {key!r} not found in map {map!r}")
    return found


def _check_version(field: str, version: int | None) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise bad_request(ID, f"{field} must be an integer")
    if version is not None and version < 0:
        raise bad_request(ID, f"{field} must be >= 0 (got {version})")


def map_put(t: Tables, map: str, key: str, value: bytes, version: int | None) -> int:
    """Set a key, compare-and-set when ``version`` is given; the new version."""
    value = _check_bytes("value", value)
    _check_version("version", version)
    found = t.map_get(map, key)
    current = found[1] if found is not None else 0
    if version is not None and version != current:
        raise conflict(ID, f"map {map!r} key {key!r} is at version {current}, not {version}")
    t.map_put(map, key, value, current + 1)
    return current + 1


def map_delete(t: Tables, map: str, key: str, version: int | None) -> None:
    """Delete a key, only at ``version`` when given."""
    _check_version("version", version)
    _, current = map_get(t, map, key)
    if version is not None and version != current:
        raise conflict(ID, f"map {map!r} key {key!r} is at version {current}, not {version}")
    t.map_delete(map, key)


def map_list(t: Tables, map: str) -> list[MapEntry]:
    """Every entry of a map, by key."""
    return [MapEntry(k, v, n) for k, v, n in t.map_list(map)]


def enqueue(t: Tables, now: float, queue: str, body: bytes, delay: float, attempts: int) -> str:
    """Add a task due at ``now + delay``; its id."""
    body = _check_bytes("body", body)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 1000:
        raise bad_request(ID, f"max_attempts must be an integer from 1 to 1000 (got {attempts})")
    return str(t.task_insert(TaskRow(0, queue, body, attempts, now + delay)))


def _task(row: TaskRow) -> Task:
    expires = row.due if row.state == "leased" else 0.0
    return Task(
        str(row.id),
        row.queue,
        row.body,
        row.attempts,
        row.max_attempts,
        row.worker,
        expires,
        row.error,
    )


def lease(t: Tables, now: float, queue: str, worker: str, lease_time: float) -> Task | None:
    """Hand the next due task to ``worker`` (an expired lease counts as a failed attempt)."""
    while (row := t.task_next(queue, now)) is not None:
        if row.state == "leased" and row.attempts >= row.max_attempts:
            row.state, row.error = "dead", f"lease of worker {row.worker!r} expired"
            t.task_update(row)
            continue
        row.state, row.worker, row.due = "leased", worker, now + lease_time
        row.attempts += 1
        t.task_update(row)
        return _task(row)
    return None


def _leased(t: Tables, now: float, task: Task, what: str) -> TaskRow:
    try:
        row = t.task_get(int(task.id))
    except ValueError:
        row = None
    if row is None or row.state != "leased" or row.attempts != task.attempt:
        raise conflict(ID, f"cannot {what} task {task.id}: its lease was lost")
    if row.worker != task.worker or row.due <= now:
        raise conflict(ID, f"cannot {what} task {task.id}: its lease expired")
    return row


def ack(t: Tables, now: float, task: Task) -> None:
    """Delete a task held by a live lease."""
    t.task_delete(_leased(t, now, task, "ack").id)


def fail(t: Tables, now: float, task: Task, error: str) -> None:
    """Retry a leased task after a backoff, or dead-letter it after its last attempt."""
    row = _leased(t, now, task, "fail")
    row.error, row.worker = error, ""
    if row.attempts >= row.max_attempts:
        row.state = "dead"
    else:
        row.state = "ready"
        row.due = now + min(BACKOFF_BASE * 2 ** (row.attempts - 1), BACKOFF_MAX)
    t.task_update(row)


def dead(t: Tables, queue: str) -> list[Task]:
    """The dead-lettered tasks of ``queue``, oldest first."""
    return [_task(r) for r in sorted(t.task_dead(queue), key=lambda r: r.id)]
