"""Documents as immutable trees: lookups, merges, deletes, rendering and the stored form.

A tree is a ``dict`` of JSON values whose secret leaves are :class:`Secret` objects. Trees are
never changed in place: a write copies the objects on its way down, so a tree handed to a
reader (or another thread) stays valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import too_large
from . import MAX_DOCUMENT, SECRET_MASK
from ._paths import Path

__all__ = [
    "Secret",
    "Tree",
    "decode_tree",
    "delete_at",
    "encode_tree",
    "lookup",
    "render",
    "same",
    "seal_leaves",
    "set_at",
]

Tree = dict[str, Any]
Reveal = Callable[["Secret", Path], Any]
Seal = Callable[[Any, Path], "Secret"]

_SECRET_EXT = 1
_MISSING: Any = object()


class Secret:
    """An encrypted leaf: AES-GCM ``nonce + ciphertext + tag`` of its JSON."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    def __repr__(self) -> str:
        return "Secret(...)"


def lookup(tree: Any, at: Path) -> tuple[bool, Any]:
    """``(True, node)`` for the node at ``at``, else ``(False, None)``."""
    node = tree
    for key in at:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def seal_leaves(value: Any, at: Path, seal: Seal) -> Any:
    """``value`` with each leaf (anything but an object) replaced by ``seal(leaf, path)``."""
    if isinstance(value, dict):
        return {k: seal_leaves(v, (*at, k), seal) for k, v in value.items()}
    return seal(value, at)


def set_at(tree: Tree, at: Path, value: Any) -> Tree:
    """A new tree with ``value`` merged into (an object) or replacing (anything else) the
    node at ``at``. ``value`` must be fresh: it becomes part of the new tree."""
    if not at:
        return _merge(tree, value)  # type: ignore[no-any-return]
    root = dict(tree)
    node = root
    for key in at[:-1]:
        child = node.get(key)
        child = dict(child) if isinstance(child, dict) else {}
        node[key] = child
        node = child
    node[at[-1]] = _merge(node.get(at[-1], _MISSING), value)
    return root


def _merge(old: Any, new: Any) -> Any:
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return new
        out = dict(old)
        for key, item in new.items():
            out[key] = _merge(old.get(key, _MISSING), item)
        return out
    if isinstance(old, Secret) and type(new) is str and new == SECRET_MASK:
        return old  # a masked read written back keeps the secret
    return new


def delete_at(tree: Tree, at: Path) -> Tree | None:
    """A new tree without the node at ``at``; ``None`` when there is nothing to delete."""
    if not at:
        return {} if tree else None
    found, parent = lookup(tree, at[:-1])
    if not found or not isinstance(parent, dict) or at[-1] not in parent:
        return None
    root = dict(tree)
    node = root
    for key in at[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    del node[at[-1]]
    return root


def render(node: Any, at: Path, reveal: Reveal | None) -> Any:
    """A plain JSON copy of ``node`` (which is at ``at``): secret leaves are
    :data:`SECRET_MASK`, or their clear value when ``reveal`` is given."""
    if isinstance(node, dict):
        return {k: render(v, (*at, k), reveal) for k, v in node.items()}
    if isinstance(node, Secret):
        return SECRET_MASK if reveal is None else reveal(node, at)
    if isinstance(node, list):
        return _copy_list(node)
    return node


def _copy_list(items: list[Any]) -> list[Any]:
    return [
        _copy_list(i) if isinstance(i, list) else (_copy_dict(i) if isinstance(i, dict) else i)
        for i in items
    ]


def _copy_dict(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _copy_list(v) if isinstance(v, list) else (_copy_dict(v) if isinstance(v, dict) else v)
        for k, v in obj.items()
    }


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: unlike ``==``, ``1``, ``1.0`` and ``True`` differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return msgspec.msgpack.Ext(_SECRET_EXT, obj.blob)
    raise TypeError(f"{type(obj).__name__} cannot be stored")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code != _SECRET_EXT:
        raise ValueError(f"unknown extension {code} in a stored config document")
    return Secret(bytes(data))


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder: msgspec.msgpack.Decoder[Tree] = msgspec.msgpack.Decoder(Tree, ext_hook=_ext_hook)


def encode_tree(tree: Tree) -> bytes:
    """The stored form (msgpack; secrets as extension 1); ``too_large`` past the limit."""
    data = _encoder.encode(tree)
    if len(data) > MAX_DOCUMENT:
        raise too_large(
            "config", f"the document would be {len(data)} bytes, over the limit of {MAX_DOCUMENT}"
        )
    return data


def decode_tree(data: bytes) -> Tree:
    """A tree from its stored form."""
    return _decoder.decode(data)
