"""Checks every backend runs on its input, each failing with an error that names the field."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from ..errors import bad_request, too_large
from . import MAX_BULK, MAX_KEY, MAX_METADATA, MAX_NAME, MAX_OPS, DeleteOp, Op, WriteOp

__all__ = [
    "ID",
    "check_key",
    "check_keys",
    "check_name",
    "check_ops",
    "check_page",
    "check_pattern",
    "check_table",
    "check_write",
    "to_bytes",
]

ID = "store"
"""The ``id`` of every error the store raises."""

_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_NAME}}}")


@functools.lru_cache(maxsize=1024)
def check_name(kind: str, name: str) -> None:
    """A database or table name: ``[A-Za-z0-9_.-]{1,128}``."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise bad_request(
            ID, f"{kind} {name!r} is invalid: use 1 to {MAX_NAME} of A-Z a-z 0-9 _ . -"
        )


def check_table(database: str, table: str) -> None:
    """Both names of a table."""
    check_name("database", database)
    check_name("table", table)


def _utf8_size(text: str, field: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise bad_request(ID, f"{field} is not valid UTF-8 (lone surrogate)") from None


def check_pattern(text: str, field: str) -> None:
    """A prefix or suffix: like a key, but may be empty."""
    if not isinstance(text, str):
        raise bad_request(ID, f"{field} must be a string, not {type(text).__name__}")
    if "\x00" in text:
        raise bad_request(ID, f"{field} must not contain NUL")
    size = _utf8_size(text, field)
    if size > MAX_KEY:
        raise bad_request(ID, f"{field} is {size} bytes; the limit is {MAX_KEY}")


def check_key(key: str, field: str = "key") -> None:
    """A key: 1 to 1,024 bytes of UTF-8, no NUL."""
    check_pattern(key, field)
    if not key:
        raise bad_request(ID, f"{field} must not be empty")


def check_keys(keys: Sequence[str]) -> None:
    """The keys of a bulk read."""
    if len(keys) > MAX_BULK:
        raise bad_request(ID, f"keys: {len(keys)} keys; the limit is {MAX_BULK} per read")
    for i, key in enumerate(keys):
        check_key(key, f"keys[{i}]")


def check_page(limit: int | None, offset: int, order: str) -> None:
    """``limit`` (None: all), ``offset`` and ``order`` of a read or listing."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise bad_request(ID, f"limit must be a non-negative integer, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise bad_request(ID, f"offset must be a non-negative integer, got {offset!r}")
    if order not in ("asc", "desc"):
        raise bad_request(ID, f"order must be 'asc' or 'desc', got {order!r}")


def check_listing(
    database: str,
    table: str,
    prefix: str,
    suffix: str,
    limit: int | None,
    offset: int,
    order: str,
) -> None:
    """Validate the arguments of ``list_keys``."""
    check_table(database, table)
    check_pattern(prefix, "prefix")
    check_pattern(suffix, "suffix")
    check_page(limit, offset, order)


def to_bytes(value: object, field: str = "value") -> bytes:
    """``value`` as bytes; anything but bytes-like is refused."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise bad_request(ID, f"{field} must be bytes, not {type(value).__name__}")


def check_write(
    field: str,
    key: str,
    value: bytes,
    metadata: dict[str, str] | None,
    ttl: float | None,
    etag: str | None,
    if_absent: bool,
    max_value: int,
) -> None:
    """Everything a write carries; ``field`` prefixes the names in errors (``ops[2].``)."""
    check_key(key, f"{field}key")
    if len(value) > max_value:
        raise too_large(
            ID, f"{field}value of key {key!r} is {len(value)} bytes; the limit is {max_value}"
        )
    if metadata:
        size = 0
        for name, text in metadata.items():
            if not isinstance(name, str) or not isinstance(text, str) or not name:
                raise bad_request(
                    ID, f"{field}metadata must map non-empty strings to strings ({name!r})"
                )
            size += _utf8_size(name, f"{field}metadata") + _utf8_size(text, f"{field}metadata")
        if size > MAX_METADATA:
            raise too_large(ID, f"{field}metadata is {size} bytes; the limit is {MAX_METADATA}")
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise bad_request(ID, f"{field}ttl must be a positive number of seconds, got {ttl!r}")
    if etag and if_absent:
        raise bad_request(ID, f"{field}etag and if_absent cannot be used together")


def check_ops(ops: Sequence[Op], max_value: int) -> None:
    """The ops of a transaction."""
    if len(ops) > MAX_OPS:
        raise bad_request(ID, f"ops: {len(ops)} ops; the limit is {MAX_OPS} per transaction")
    for i, op in enumerate(ops):
        where = f"ops[{i}]."
        if isinstance(op, WriteOp):
            if not isinstance(op.value, bytes):
                raise bad_request(ID, f"{where}value must be bytes, not {type(op.value).__name__}")
            check_write(
                where, op.key, op.value, op.metadata, op.ttl, op.etag, op.if_absent, max_value
            )
        elif isinstance(op, DeleteOp):
            check_key(op.key, f"{where}key")
        else:
            raise bad_request(ID, f"ops[{i}] must be a WriteOp or DeleteOp, not {op!r}")
