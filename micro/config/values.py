"""Typed access to config values: ``(await config.get("db.port")).int(5432)``.

The rule of the getters: a getter returns the value when it already has that JSON type,
else its default (when the path is missing, null, or holds another type). Nothing is parsed
or coerced, with one exception: an integer is also a valid :meth:`Value.float`. Booleans are
never numbers. A masked secret is the string ``"[secret]"``.

:meth:`Value.scan` converts the value into a type (a ``msgspec.Struct``, dataclass,
``list[int]``, ...) with ``msgspec.convert``, strictly; a missing value scans as ``{}``, so a
Struct whose fields all have defaults comes back with them. A value that does not fit raises
``bad_request`` naming the field.
"""

from __future__ import annotations

import builtins
from typing import Any, TypeVar

import msgspec

from ..errors import bad_request
from ._paths import join, split_path

__all__ = ["Value"]

T = TypeVar("T")


class Value:
    """The value found at ``path`` (``raw`` is ``None`` when there is none)."""

    __slots__ = ("path", "raw")

    def __init__(self, path: builtins.str, raw: Any) -> None:
        self.path = path
        self.raw = raw

    @property
    def exists(self) -> builtins.bool:
        """True unless the path is missing (or holds null)."""
        return self.raw is not None

    def int(self, default: builtins.int = 0) -> builtins.int:
        """The value if it is an integer, else ``default``."""
        raw = self.raw
        if isinstance(raw, builtins.int) and not isinstance(raw, builtins.bool):
            return raw
        return default

    def float(self, default: builtins.float = 0.0) -> builtins.float:
        """The value if it is a number (integers included), else ``default``."""
        raw = self.raw
        if isinstance(raw, (builtins.int, builtins.float)) and not isinstance(raw, builtins.bool):
            return builtins.float(raw)
        return default

    def str(self, default: builtins.str = "") -> builtins.str:
        """The value if it is a string, else ``default``."""
        return self.raw if isinstance(self.raw, builtins.str) else default

    def bool(self, default: builtins.bool = False) -> builtins.bool:
        """The value if it is ``true`` or ``false``, else ``default``."""
        return self.raw if isinstance(self.raw, builtins.bool) else default

    def list(self, default: builtins.list[Any] | None = None) -> builtins.list[Any]:
        """The value if it is a list, else ``default`` (``[]`` when not given)."""
        if isinstance(self.raw, builtins.list):
            return self.raw
        return [] if default is None else default

    def dict(
        self, default: builtins.dict[builtins.str, Any] | None = None
    ) -> builtins.dict[builtins.str, Any]:
        """The value if it is an object, else ``default`` (``{}`` when not given)."""
        if isinstance(self.raw, builtins.dict):
            return self.raw
        return {} if default is None else default

    def scan(self, type: builtins.type[T]) -> T:
        """The value converted into ``type``; ``bad_request`` naming the field if it does not
        fit. A missing value scans as an empty object."""
        raw = {} if self.raw is None else self.raw
        try:
            return msgspec.convert(raw, type)
        except msgspec.ValidationError as exc:
            name = getattr(type, "__name__", repr(type))
            where = repr(self.path) if self.path else "the document"
            raise bad_request("config", f"config at {where} does not fit {name}: {exc}") from None

    def get(self, path: builtins.str) -> Value:
        """The value at ``path`` inside this one (``a.b`` then ``c`` is ``a.b.c``)."""
        node = self.raw
        for key in split_path(path):
            node = node.get(key) if isinstance(node, builtins.dict) else None
        full = join(tuple(p for p in (self.path, path) if p))
        return Value(full, node)

    def __repr__(self) -> builtins.str:
        return f"Value({self.path!r}, {self.raw!r})"
