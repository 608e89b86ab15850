"""``service.config``: one namespace of a config backend, read through typed values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ._paths import check_namespace
from .values import Value

if TYPE_CHECKING:
    from . import Change, Config

__all__ = ["ScopedConfig"]


class ScopedConfig:
    """The config of one namespace, what ``service.config`` is: paths are relative to the
    namespace's document and reads come back as :class:`~micro.config.values.Value`, e.g.
    ``(await service.config.get("db.port")).int(5432)``."""

    __slots__ = ("backend", "namespace")

    def __init__(self, backend: Config, namespace: str) -> None:
        self.backend = backend
        self.namespace = check_namespace(namespace)

    async def get(self, path: str = "", *, secrets: bool = False) -> Value:
        """The value at ``path`` (the whole document for ``""``), secrets masked unless
        ``secrets``."""
        return Value(path, await self.backend.get(self.namespace, path, secrets))

    async def set(self, path: str, value: Any, secret: bool = False) -> None:
        """Merge an object into ``path``, or replace it with any other value; ``secret``
        encrypts every leaf of ``value`` and masks it in reads."""
        await self.backend.set(self.namespace, path, value, secret)

    async def delete(self, path: str) -> None:
        """Remove the value at ``path``."""
        await self.backend.delete(self.namespace, path)

    def watch(self, path: str = "") -> AsyncIterator[Change]:
        """Every change at or under ``path`` from now on."""
        return self.backend.watch(self.namespace, path)

    def __repr__(self) -> str:
        return f"ScopedConfig({self.namespace!r}, {type(self.backend).__name__})"
