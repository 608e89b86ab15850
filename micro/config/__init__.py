"""Config: one JSON document per namespace, addressed by dot paths, with secrets and watch.

A namespace (``micro``, ``helloworld``, ...) holds one JSON object. A *path* names a place in
it: ``svc.db.addr`` is ``doc["svc"]["db"]["addr"]``; the empty path is the whole document.

- ``get(ns, path)`` returns a copy of the value at ``path`` (``None`` when nothing is there,
  the empty object ``{}`` for the whole document of an unknown namespace).
- ``set(ns, path, value)`` with an object *merges* it leaf by leaf into what is there (keys it
  does not name are kept; objects inside it merge too); any other value (string, number,
  bool, null, list) *replaces* what is there, an object included. Setting under a scalar
  turns the scalar into an object. The root can only be set to an object.
- ``delete(ns, path)`` removes the value at ``path`` (deleting ``""`` empties the document);
  deleting a path that does not exist changes nothing.

Secrets: ``set(..., secret=True)`` marks every leaf of the value secret. A secret leaf is
encrypted with AES-GCM before it is stored (bound to its namespace and path) and reads show
the string ``"[secret]"`` in its place unless ``get(..., secrets=True)`` asks for the clear
value. Writing ``"[secret]"`` back over a secret leaf keeps the secret, so a document read
masked and written back loses nothing. Who may ask for ``secrets=True`` is decided by the
auth block; until then the flag alone is the request.

Watch: ``watch(ns, path)`` yields a :class:`Change` for every write at or under ``path``, and
for writes to an ancestor of ``path`` that change what is at ``path``. Each write gives the
namespace a new, strictly increasing ``version``; changes arrive in version order. A watcher
is subscribed when ``watch()`` returns (over RPC: before any later call through the same
client completes); one that falls more than :data:`WATCH_BUFFER` changes (or
:data:`WATCH_BYTES` bytes) behind is ended with an ``unavailable`` error: read afresh and
watch again.

Limits (``bad_request`` / ``too_large`` naming what is wrong): namespaces and path segments
are 1-128 letters, digits, ``-`` or ``_`` (keys of objects inside values too); paths at most
:data:`MAX_PATH` characters and :data:`MAX_DEPTH` segments deep; values JSON only (no NaN,
integers within 64 bits), at most :data:`MAX_VALUE` bytes of JSON and :data:`MAX_NESTING`
levels of nesting; a stored document at most :data:`MAX_DOCUMENT` bytes.

Backends: :mod:`micro.config.memory`, :mod:`micro.config.sqlite` (durable, what ``micro
server`` runs) and :mod:`micro.config.rpc` (the client of the server's ``config`` service).
Services use :class:`micro.config.scoped.ScopedConfig` (their own namespace) and read values
through :class:`micro.config.values.Value` (typed getters with defaults).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_DEPTH",
    "MAX_DOCUMENT",
    "MAX_NESTING",
    "MAX_PATH",
    "MAX_SEGMENT",
    "MAX_VALUE",
    "SECRET_MASK",
    "WATCH_BUFFER",
    "WATCH_BYTES",
    "Change",
    "Config",
]

DEFAULT_NAMESPACE: Final = "micro"
MAX_SEGMENT: Final = 128
"""Characters in a namespace, a path segment or an object key."""
MAX_PATH: Final = 512
"""Characters in a dot path."""
MAX_DEPTH: Final = 32
"""Segments in a path, counting the objects nested inside a value set there."""
MAX_NESTING: Final = 64
"""Levels of lists and objects inside one value."""
MAX_VALUE: Final = 256 * 1024
"""Bytes of JSON in one value given to ``set``."""
MAX_DOCUMENT: Final = 1024 * 1024
"""Bytes of one namespace's document as stored (secrets encrypted)."""
WATCH_BUFFER: Final = 1024
"""Changes a watcher may fall behind before it is ended."""
WATCH_BYTES: Final = 32 * 1024 * 1024
"""Bytes of JSON a watcher may fall behind before it is ended."""
SECRET_MASK: Final = "[secret]"
"""What reads show in place of a secret leaf."""


class Change(msgspec.Struct):
    """One write seen by a watcher.

    ``path`` is where the write happened when that is at or under the watched path, else the
    watched path itself (a write to an ancestor that changed it). ``value`` is what is there
    now (secret leaves masked; ``None`` when ``deleted``), ``version`` the namespace's version
    after the write.
    """

    path: str
    value: Any = None
    deleted: bool = False
    version: int = 0


@runtime_checkable
class Config(Protocol):
    """What every config backend provides."""

    async def get(self, namespace: str, path: str = "", secrets: bool = False) -> Any:
        """A copy of the value at ``path`` (``None`` if absent); secrets clear if ``secrets``."""
        ...

    async def set(self, namespace: str, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value."""
        ...

    async def delete(self, namespace: str, path: str) -> None:
        """Remove the value at ``path`` (nothing happens if there is none)."""
        ...

    def watch(self, namespace: str, path: str = "") -> AsyncIterator[Change]:
        """Every change at or under ``path`` from now on, in order."""
        ...

    async def close(self) -> None:
        """End watchers and release files, threads and connections."""
        ...
