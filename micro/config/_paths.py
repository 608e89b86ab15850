"""Validation of namespaces, dot paths and values, done once at the edge of every backend."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from ..errors import bad_request, too_large
from . import MAX_DEPTH, MAX_NESTING, MAX_PATH, MAX_SEGMENT, MAX_VALUE

__all__ = ["check_namespace", "join", "normalize", "split_path"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_JSON = msgspec.json.Encoder()
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_RULE = f"1-{MAX_SEGMENT} letters, digits, - or _"

Path = tuple[str, ...]


def check_namespace(namespace: object) -> str:
    """``namespace`` if it is a valid namespace name, else ``bad_request``."""
    if not isinstance(namespace, str) or not _valid_name(namespace):
        raise bad_request("config", f"namespace {namespace!r} must be {_RULE}")
    return namespace


def _valid_name(name: str) -> bool:
    return len(name) <= MAX_SEGMENT and _NAME.fullmatch(name) is not None


def split_path(path: object) -> Path:
    """The segments of a dot path (``()`` for ``""``), else ``bad_request`` saying why."""
    if not isinstance(path, str):
        raise bad_request("config", f"path must be a string, got {type(path).__name__}")
    if path == "":
        return ()
    if len(path) > MAX_PATH:
        raise bad_request("config", f"path of {len(path)} characters exceeds {MAX_PATH}")
    segments = tuple(path.split("."))
    if len(segments) > MAX_DEPTH:
        raise bad_request("config", f"path {path!r} is deeper than {MAX_DEPTH} segments")
    for segment in segments:
        if not segment:
            raise bad_request("config", f"path {path!r} has an empty segment")
        if not _valid_name(segment):
            raise bad_request("config", f"path {path!r}: segment {segment!r} must be {_RULE}")
    return segments


def join(segments: Path) -> str:
    """The dot path of ``segments``."""
    return ".".join(segments)


def normalize(value: Any, at: Path) -> Any:
    """A fresh copy of ``value`` (tuples become lists) once it is checked to be JSON that may
    be stored at ``at``: string keys that are valid segments, depth, finite floats, 64-bit
    integers, and size. Raises ``bad_request`` or ``too_large`` naming the place."""
    clean = _copy(value, at, len(at), 0)
    size = len(_JSON.encode(clean))
    if size > MAX_VALUE:
        raise too_large("config", f"value of {size} bytes exceeds the limit of {MAX_VALUE}")
    return clean


def _copy(value: Any, at: Path, depth: int, nesting: int) -> Any:
    """Copy ``value``; ``depth`` is its number of path segments, or -1 inside a list, where
    objects are plain JSON rather than addressable places."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise bad_request("config", f"integer at {_where(at)} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise bad_request("config", f"number at {_where(at)} is not finite")
        return value
    if nesting >= MAX_NESTING:
        raise bad_request("config", f"value at {_where(at)} nests deeper than {MAX_NESTING}")
    if isinstance(value, (list, tuple)):
        return [_copy(item, at, -1, nesting + 1) for item in value]
    if isinstance(value, dict):
        return _copy_object(value, at, depth, nesting)
    raise bad_request(
        "config", f"value at {_where(at)} is a {type(value).__name__}, which is not JSON"
    )


def _copy_object(value: dict[Any, Any], at: Path, depth: int, nesting: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise bad_request("config", f"object at {_where(at)} has a non-string key")
        if depth < 0:
            out[key] = _copy(item, at, -1, nesting + 1)
            continue
        if not _valid_name(key):
            raise bad_request("config", f"key {key[:40]!r} at {_where(at)} must be {_RULE}")
        if depth + 1 > MAX_DEPTH:
            raise bad_request(
                "config", f"value at {_where(at)} is deeper than {MAX_DEPTH} segments"
            )
        out[key] = _copy(item, (*at, key), depth + 1, nesting + 1)
    return out


def _where(at: Path) -> str:
    return repr(join(at)) if at else "the root"
