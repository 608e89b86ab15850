"""Argument checks shared by the token backends: each failure is a ``bad_request`` naming
the field (the limits are documented in :mod:`micro.token`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ..errors import bad_request
from . import ID, MAX_METADATA, MAX_SCOPE, MAX_TOKEN, MAX_TTL

__all__ = [
    "check_id",
    "check_metadata",
    "check_namespace",
    "check_scope",
    "check_token",
    "check_ttl",
]

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _control(text: str) -> bool:
    """True if ``text`` holds a C0 or C1 control character (or DEL)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def check_scope(scope: object, field: str = "scope") -> str:
    """A scope: a string of 1 to 256 characters without control characters."""
    if not isinstance(scope, str):
        raise bad_request(ID, f"{field} must be a string")
    if not scope:
        raise bad_request(ID, f"{field} must not be empty")
    if len(scope) > MAX_SCOPE:
        raise bad_request(ID, f"{field} is longer than {MAX_SCOPE} characters")
    if _control(scope):
        raise bad_request(ID, f"{field} must not contain control characters")
    return scope


def check_ttl(ttl: object) -> float:
    """A lifetime: a finite number of seconds, > 0 and at most one year."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise bad_request(ID, "ttl must be a finite number of seconds")
    if ttl <= 0:
        raise bad_request(ID, f"ttl must be > 0 (got {ttl})")
    if ttl > MAX_TTL:
        raise bad_request(ID, f"ttl must be at most {MAX_TTL:g} seconds (one year, got {ttl})")
    return float(ttl)


def check_metadata(metadata: object) -> dict[str, str]:
    """String keys and values, at most 16 KiB of UTF-8 in all; a copy."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise bad_request(ID, "metadata must be a mapping of strings to strings")
    copy: dict[str, str] = {}
    size = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise bad_request(ID, "metadata keys and values must be strings")
        size += len(key.encode("utf-8", "surrogatepass"))
        size += len(value.encode("utf-8", "surrogatepass"))
        copy[key] = value
    if size > MAX_METADATA:
        raise bad_request(ID, f"metadata is larger than {MAX_METADATA} bytes (got {size})")
    return copy


def check_token(token: object) -> str:
    """A presented token: a string of 1 to 256 characters, checked before any hashing."""
    if not isinstance(token, str):
        raise bad_request(ID, "token must be a string")
    if not token:
        raise bad_request(ID, "token must not be empty")
    if len(token) > MAX_TOKEN:
        raise bad_request(ID, f"token is longer than {MAX_TOKEN} characters")
    return token


def check_namespace(namespace: object) -> str:
    """A namespace: ``[A-Za-z0-9_.-]{1,128}``."""
    if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
        raise bad_request(ID, "namespace must match [A-Za-z0-9_.-]{1,128}")
    return namespace


def check_id(id: object) -> str:
    """A token id: ``[A-Za-z0-9_.-]{1,128}``."""
    if not isinstance(id, str) or not _NAME.fullmatch(id):
        raise bad_request(ID, "id must match [A-Za-z0-9_.-]{1,128}")
    return id
