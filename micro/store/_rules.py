"""Semantics every backend shares: conditions on writes, expiry, key matching, paging."""

from __future__ import annotations

from typing import TypeVar

from ..errors import MicroError, conflict
from . import Record
from ._validate import ID

__all__ = [
    "check_condition",
    "copy_record",
    "expiry_of",
    "in_transaction",
    "is_live",
    "matches",
    "page",
    "successor",
]

T = TypeVar("T")


def copy_record(record: Record) -> Record:
    """A record the caller may change without changing the store's copy."""
    return Record(record.key, record.value, dict(record.metadata), record.expiry, record.etag)


def is_live(record: Record | None, now: float) -> bool:
    """Whether ``record`` exists and has not expired at ``now``."""
    return record is not None and (record.expiry is None or record.expiry > now)


def expiry_of(ttl: float | None, now: float) -> float | None:
    """The instant a record written at ``now`` with ``ttl`` expires (None: never)."""
    return None if ttl is None else now + ttl


def check_condition(current: str | None, key: str, etag: str | None, if_absent: bool) -> None:
    """Raise ``conflict`` unless a write or delete conditioned on ``etag`` / ``if_absent``
    may go ahead; ``current`` is the etag of the live record of ``key`` (None: absent or
    expired)."""
    if if_absent and current is not None:
        raise conflict(ID, f"key {key!r} already exists")
    if etag:
        if current is None:
            raise conflict(ID, f"key {key!r} does not exist (expected etag {etag!r})")
        if current != etag:
            raise conflict(ID, f"key {key!r} has etag {current!r}, not {etag!r}: it changed")


def in_transaction(index: int, kind: str, key: str, err: MicroError) -> MicroError:
    """``err`` raised by op ``index`` (a ``write`` or ``delete`` of ``key``) of a
    transaction, saying which op failed."""
    detail = f"ops[{index}] ({kind} {key!r}) failed, nothing was applied: {err.detail}"
    return MicroError(err.id, err.code, detail, err.status)


def matches(key: str, prefix: str, suffix: str) -> bool:
    """Whether ``key`` starts with ``prefix`` and ends with ``suffix``."""
    return key.startswith(prefix) and key.endswith(suffix)


def page(items: list[T], limit: int | None, offset: int) -> list[T]:
    """``items`` after ``offset``, at most ``limit`` of them."""
    if limit is None:
        return items[offset:] if offset else items
    return items[offset : offset + limit]


def successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (None when
    there is none): keys with the prefix are exactly those in ``[prefix, successor)``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be in a key: skip them
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
