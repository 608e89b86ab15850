"""Request and response types of the ``config`` RPC service."""

from __future__ import annotations

from typing import Any

import msgspec

from . import DEFAULT_NAMESPACE, Change

__all__ = [
    "DeleteRequest",
    "Empty",
    "GetRequest",
    "GetResponse",
    "SetRequest",
    "WatchEvent",
    "WatchRequest",
]


class Empty(msgspec.Struct):
    """No fields."""


class GetRequest(msgspec.Struct):
    """Read the value at ``path`` (``""``: the whole document); ``secrets`` asks for secret
    leaves in clear instead of ``"[secret]"``."""

    path: str = ""
    namespace: str = DEFAULT_NAMESPACE
    secrets: bool = False


class GetResponse(msgspec.Struct):
    """The value found (``null`` when there is none)."""

    value: Any = None


class SetRequest(msgspec.Struct):
    """Merge an object into ``path``, or replace it with any other value; ``secret``
    encrypts every leaf of ``value``."""

    path: str
    value: Any
    namespace: str = DEFAULT_NAMESPACE
    secret: bool = False


class DeleteRequest(msgspec.Struct):
    """Remove the value at ``path``."""

    path: str
    namespace: str = DEFAULT_NAMESPACE


class WatchRequest(msgspec.Struct):
    """Watch ``path`` (``""``: the whole document) for changes."""

    path: str = ""
    namespace: str = DEFAULT_NAMESPACE


class WatchEvent(msgspec.Struct, omit_defaults=True):
    """One message of a watch stream: first ``{ready: true}`` once the watch is subscribed,
    then one ``{change}`` per change."""

    ready: bool = False
    change: Change | None = None
