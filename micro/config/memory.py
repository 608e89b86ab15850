"""The in-process config backend: complete and deterministic, nothing kept after exit.

Secrets are encrypted here too (with ``key``, or a random key of the instance's own), so the
memory backend masks and reveals exactly as the durable one does. Config has no timers, so
there is no clock to inject: every change happens when a call makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import Change
from ._paths import check_namespace, normalize, split_path
from ._state import Documents, render_at
from ._watch import Hub
from .keys import Cipher, generate_key

__all__ = ["MemoryConfig"]


class MemoryConfig:
    """Documents held in memory; ``key`` (32 bytes) encrypts secrets."""

    def __init__(self, key: bytes | None = None) -> None:
        self._cipher = Cipher(key if key is not None else generate_key())
        self._docs = Documents(self._cipher)
        self._hub = Hub()

    async def get(self, namespace: str, path: str = "", secrets: bool = False) -> Any:
        """A copy of the value at ``path`` (``None`` if absent)."""
        check_namespace(namespace)
        at = split_path(path)
        tree, _ = self._docs.current(namespace)
        return render_at(tree, namespace, at, self._cipher if secrets else None)

    async def set(self, namespace: str, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value."""
        check_namespace(namespace)
        at = split_path(path)
        applied = self._docs.set(namespace, at, normalize(value, at), secret)
        self._hub.publish(applied)

    async def delete(self, namespace: str, path: str) -> None:
        """Remove the value at ``path``."""
        check_namespace(namespace)
        applied = self._docs.delete(namespace, split_path(path))
        if applied is not None:
            self._hub.publish(applied)

    def watchers(self) -> int:
        """How many watchers are subscribed."""
        return self._hub.count()

    def watch(self, namespace: str, path: str = "") -> AsyncIterator[Change]:
        """Every change at or under ``path`` from now on (subscribed before this returns)."""
        check_namespace(namespace)
        return self._hub.watch(namespace, split_path(path))

    async def close(self) -> None:
        """End every watcher."""
        self._hub.close()
